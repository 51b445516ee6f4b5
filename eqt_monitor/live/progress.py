"""Exactly-once bookkeeping of the live daemon across restarts.

Per station the catalog stores ``settled``: the time before which every pick and detection of
the station is written (``StationProcessor.settled_until`` after the write). A restarted daemon
re-reads the data from ``settled - CONTEXT_S`` on (so its windows, on the absolute-time grid,
and its stacked probabilities after ``settled`` equal an uninterrupted run's), and drops the
picks and detections it makes before ``settled``: those are in the catalog already.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import TypeVar

from eqt_monitor.catalog.store import Catalog
from eqt_monitor.pipeline.engine import CONTEXT_S
from eqt_monitor.records import Detection, Pick, StationKey

STATE_KEY = "daemon.settled"  # a daemon with a shard name (several sharing one catalog): STATE_KEY.<shard>


def state_key(shard: str | None) -> str:
    """The state key of a daemon's progress: one per shard, so daemons sharing a catalog keep theirs apart."""
    return STATE_KEY if shard is None else f"{STATE_KEY}.{shard}"

T = TypeVar("T", Pick, Detection)


def _time(item: Pick | Detection) -> float:
    return item.time if isinstance(item, Pick) else item.start


class Progress:
    """``settled`` per station (station id ``NET.STA.LOC``), loaded from and saved to the catalog."""

    def __init__(self, catalog: Catalog, key: str = STATE_KEY) -> None:
        self.catalog, self.key = catalog, key
        self.restored: dict[str, float] = json.loads(catalog.get_state(key, "{}"))
        self.settled: dict[str, float] = dict(self.restored)
        self._lock = threading.Lock()

    def keep(self, items: Iterable[T]) -> list[T]:
        """The picks or detections not already written before the restart."""
        return [x for x in items if _time(x) >= self.restored.get(x.station.id, float("-inf"))]

    def rejoin(self, key: StationKey) -> None:
        """A station added back by a reload: as after a restart, it is re-read from ``settled -
        CONTEXT_S`` and what it picks before ``settled`` (written already) is dropped."""
        with self._lock:
            if key.id in self.settled:
                self.restored[key.id] = self.settled[key.id]

    def advance(self, settled: Mapping[StationKey, float | None]) -> None:
        """Record new settled times (never moving one back)."""
        with self._lock:
            for key, t in settled.items():
                if t is not None and t > self.settled.get(key.id, float("-inf")):
                    self.settled[key.id] = t

    def save(self) -> dict[str, float]:
        """Write the settled times to the catalog; returns them."""
        with self._lock:
            snapshot = dict(self.settled)
        self.catalog.set_state(self.key, json.dumps(snapshot, sort_keys=True))
        return snapshot

    def get(self, key: StationKey) -> float | None:
        """The station's settled time, if it has one."""
        return self.settled.get(key.id)

    def resume(self, keys: Iterable[StationKey]) -> dict[StationKey, float]:
        """Where to restart reading each station that has progress: ``CONTEXT_S`` before ``settled``."""
        return {k: self.restored[k.id] - CONTEXT_S for k in keys if k.id in self.restored}

    def reread_until(self, keys: Iterable[StationKey]) -> dict[StationKey, float]:
        """Per station, the end of the data a restart need not read again (``settled - CONTEXT_S``)."""
        with self._lock:
            return {k: self.settled[k.id] - CONTEXT_S for k in keys if k.id in self.settled}
