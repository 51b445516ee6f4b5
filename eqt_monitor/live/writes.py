"""The daemon's writes when the disk may refuse them (full, read-only): nothing is lost, nothing stops.

``Storage`` keeps, per file the daemon writes (the catalog, SeedLink state files, the rolling
QuakeML), whether its last write failed: one log line per change of state, the catalog's state in
``eqt_monitor_catalog_writable``, every failure in ``eqt_monitor_catalog_write_errors`` (catalog)
or ``errors{kind="state_write"}`` (other files), and ``problems()`` for ``/healthz``.

``PendingWrites`` holds the picks and detections not yet in the catalog, with the progress
(``settled`` per station) that becomes true once they are: written in order, so the progress the
daemon saves never runs ahead of the catalog. While writes fail they wait in memory (``full``
past ``max_held``: the daemon then stops taking data, and the collector's queue backs up into TCP)
and are retried with capped exponential backoff.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eqt_monitor.catalog.store import CatalogWriteError
from eqt_monitor.driver import CatalogWriter
from eqt_monitor.live import metrics
from eqt_monitor.records import Detection, EarlyOutcome, Pick, StationKey

log = logging.getLogger(__name__)

WRITE_ERRORS = (CatalogWriteError, OSError)


class Storage:
    """Up/down state of each file the daemon writes (thread-safe: jobs write too)."""

    def __init__(self, catalog: Path | str, clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog = str(catalog)
        self._clock = clock
        self._down: dict[str, tuple[float, str]] = {}  # target -> (since, why)
        self._lock = threading.Lock()
        metrics.CATALOG_WRITABLE.set(1)

    def run(self, target: str | Path, what: str, write: Callable[[], object]) -> bool:
        """Run ``write`` (``what`` names it in the log); False (state recorded) when the disk refused it."""
        try:
            write()
        except WRITE_ERRORS as exc:
            self.failed(target, what, exc)
            return False
        self.ok(target)
        return True

    def failed(self, target: str | Path, what: str, exc: BaseException) -> None:
        """Record a refused write; the first of a series logs one warning line."""
        target = str(target)
        if target == self.catalog:
            metrics.CATALOG_WRITE_ERRORS.inc()
            metrics.CATALOG_WRITABLE.set(0)
        else:
            metrics.ERRORS.labels(kind="state_write").inc()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        with self._lock:
            if target in self._down:
                return
            self._down[target] = (self._clock(), why)
        held = " (picks and detections wait in memory and are retried)" if target == self.catalog else ""
        log.warning("%s: not writable: %s failed: %s%s", target, what, why, held)

    def ok(self, target: str | Path, detail: str = "") -> None:
        """Record a successful write; the first after failures logs one line."""
        target = str(target)
        if target == self.catalog:
            metrics.CATALOG_WRITABLE.set(1)
        with self._lock:
            down = self._down.pop(target, None)
        if down is not None:
            log.info("%s: writable again after %.0f s%s", target, self._clock() - down[0], detail)

    def is_down(self, target: str | Path) -> bool:
        with self._lock:
            return str(target) in self._down

    def problems(self) -> list[str]:
        """One phrase per file whose writes fail, for ``/healthz``."""
        now = self._clock()
        with self._lock:
            return [f"{t} not writable for {now - since:.0f} s ({why})" for t, (since, why) in sorted(self._down.items())]


@dataclass
class Batch:
    """Picks and detections to write, the progress true once they are, and when their data arrived;
    with ``picks: early``, the preliminary picks made and resolved meanwhile."""

    picks: list[Pick] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    settled: dict[StationKey, float | None] = field(default_factory=dict)
    arrived: list[float] = field(default_factory=list)  # per pick: wall time its station's data arrived
    phase_arrived: list[float] = field(default_factory=list)  # per pick: wall time its phase arrived (estimated)
    early: list[Pick] = field(default_factory=list)
    early_arrived: list[float] = field(default_factory=list)  # per preliminary pick: the same
    outcomes: list[EarlyOutcome] = field(default_factory=list)

    def extend(self, later: Batch) -> None:
        self.picks += later.picks
        self.detections += later.detections
        self.arrived += later.arrived
        self.settled.update(later.settled)
        self.phase_arrived += later.phase_arrived
        self.early += later.early
        self.early_arrived += later.early_arrived
        self.outcomes += later.outcomes

    @property
    def items(self) -> int:
        return len(self.picks) + len(self.detections) + len(self.early) + len(self.outcomes)


class PendingWrites:
    """Picks and detections on their way to the catalog (main thread only)."""

    def __init__(self, writer: CatalogWriter, storage: Storage, *, max_held: int = 200_000,
                 backoff_initial: float = 1.0, backoff_max: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.writer, self.storage = writer, storage
        self.max_held, self.backoff_initial, self.backoff_max = max_held, backoff_initial, backoff_max
        self._clock = clock
        self._held: Batch | None = None
        self._failures = 0
        self._retry_at = 0.0

    @property
    def held(self) -> int:
        """Picks and detections waiting for the catalog."""
        return self._held.items if self._held is not None else 0

    @property
    def full(self) -> bool:
        """Holding the most allowed: take no more data until the catalog accepts writes again."""
        return self.held >= self.max_held

    def add(self, batch: Batch) -> None:
        """Queue ``batch`` behind whatever is held."""
        if self._held is None:
            self._held = batch
        else:
            self._held.extend(batch)
        metrics.CATALOG_HELD.set(self.held)

    def flush(self, force: bool = False) -> Batch | None:
        """Write what is held (unless waiting for the next retry; ``force``: now); the batch once written."""
        batch = self._held
        if batch is None or (not force and self._failures and self._clock() < self._retry_at):
            return None
        if batch.items:
            try:
                self.writer.write(batch.picks, batch.detections, batch.early, batch.outcomes)
            except CatalogWriteError as exc:
                self._failures += 1
                # the exponent capped: a float cannot hold 2 ** 1024 (1025 failures, ~8.5 h of a full disk)
                delay = self.backoff_initial * 2.0 ** min(self._failures - 1, 60)
                self._retry_at = self._clock() + min(self.backoff_max, delay)
                self.storage.failed(self.writer.catalog.path, f"writing {len(batch.picks)} picks and "
                                    f"{len(batch.detections)} detections", exc)
                return None
            if self._failures:
                self.storage.ok(self.writer.catalog.path, f"; wrote the {len(batch.picks)} picks and "
                                f"{len(batch.detections)} detections held meanwhile")
        self._failures, self._held = 0, None
        metrics.CATALOG_HELD.set(0)
        return batch
