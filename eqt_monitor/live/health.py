"""The daemon's view of each station's data: when it last arrived, whether it fell silent, and
metrics and log lines for what the station buffers found (gaps, overlaps, bad records, rate
changes, dead channels, non-finite samples). It watches the buffers of the
``driver.StationPipeline`` (as its ``BufferObserver``); it holds no data itself."""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable

from eqt_monitor.live import metrics
from eqt_monitor.pipeline.buffer import BufferStats, GapPolicy, StationBuffer
from eqt_monitor.records import SAMPLING_RATE, StationKey

log = logging.getLogger(__name__)


class StationHealth:
    """Arrival times, silence and buffer metrics of the configured stations."""

    def __init__(self, keys: Iterable[StationKey], policy: GapPolicy, silent_after: float) -> None:
        self.policy, self.silent_after = policy, silent_after
        self._stats: dict[StationKey, BufferStats] = {}
        self.last_arrival: dict[StationKey, float] = {}  # wall clock
        self._watch_from: dict[StationKey, float] = {}  # wall clock: silence counts from here
        self._silent: set[StationKey] = set()
        self._overlapping: set[StationKey] = set()
        for key in keys:
            self.add_station(key)

    @property
    def keys(self) -> list[StationKey]:
        return sorted(self._stats, key=str)

    def add_station(self, key: StationKey) -> None:
        """Watch ``key`` (a new station, or one whose buffer was reset after a failure)."""
        self._stats[key] = BufferStats()
        self._watch_from.setdefault(key, time.time())

    def remove_station(self, key: StationKey) -> None:
        """Forget a station and its metric series."""
        for table in (self._stats, self.last_arrival, self._watch_from):
            table.pop(key, None)
        self._silent.discard(key)
        self._overlapping.discard(key)
        metrics.forget_station(key.id)

    def unexpected(self, trace_id: str) -> None:
        """Data of a stream no configured station owns arrived (and was dropped)."""
        metrics.ERRORS.labels(kind="unexpected_stream").inc()
        log.debug("dropping data of unconfigured stream %s", trace_id)

    def arrived(self, key: StationKey, when: float) -> None:
        """Data of ``key`` arrived at wall time ``when``."""
        self.last_arrival[key] = max(self.last_arrival.get(key, when), when)
        if key in self._silent:
            self._silent.discard(key)
            metrics.STATION_SILENT.labels(station=key.id).set(0)
            log.info("station %s: data again", key)

    def received(self, key: StationKey, buffer: StationBuffer) -> None:
        """``BufferObserver``: the buffer took a record."""
        self._report(key, buffer)

    def handed_on(self, key: StationKey, buffer: StationBuffer) -> None:
        """``BufferObserver``: the buffer handed its ready data on (gaps that end a stretch are found then)."""
        self._report(key, buffer, record=False)
        capacity = self.policy.dead_channel_s * SAMPLING_RATE
        metrics.BUFFER_FILL.labels(station=key.id).set(min(1.0, buffer.held_samples / capacity))

    def _report(self, key: StationKey, buffer: StationBuffer, record: bool = True) -> None:
        """Metrics and log lines for what the buffer counted since the last call (``record``: the
        call follows one added record, which ends an overlap episode when it repeats nothing)."""
        now, before = buffer.stats, self._stats[key]
        gaps = (now.gaps_interpolated + now.gaps_zero_filled + now.stretch_breaks
                - before.gaps_interpolated - before.gaps_zero_filled - before.stretch_breaks)
        if gaps:
            metrics.GAPS.labels(station=key.id).inc(gaps)
        if now.overlap_samples_dropped > before.overlap_samples_dropped:
            metrics.OVERLAPS.labels(station=key.id).inc()
            if key not in self._overlapping:  # one line per episode, not per record
                self._overlapping.add(key)
                log.warning("station %s: data repeats what was already received (overlap or clock jump backwards); "
                            "dropping the repeated samples", key)
        elif record and key in self._overlapping:
            self._overlapping.discard(key)
            log.info("station %s: data continues without overlap", key)
        for field, kind in (("bad_records", "bad_record"), ("rate_changes", "rate_change"),
                            ("dead_channel_outages", "dead_channel"), ("nonfinite_samples", "nonfinite_sample")):
            if getattr(now, field) > getattr(before, field):
                metrics.ERRORS.labels(kind=kind).inc(getattr(now, field) - getattr(before, field))
        self._stats[key] = dataclasses.replace(now)

    def check_silence(self, now: float | None = None) -> list[StationKey]:
        """Flag (metric + one log line per outage) stations without data for ``silent_after`` s."""
        now = time.time() if now is None else now
        for key in self.keys:
            quiet = now - self.last_arrival.get(key, self._watch_from[key])
            if quiet > self.silent_after and key not in self._silent:
                self._silent.add(key)
                metrics.STATION_SILENT.labels(station=key.id).set(1)
                metrics.ERRORS.labels(kind="station_silent").inc()
                log.warning("station %s: no data for %.0f s", key, quiet)
            elif key not in self._silent:
                metrics.STATION_SILENT.labels(station=key.id).set(0)
        return sorted(self._silent, key=str)

    def is_silent(self, key: StationKey) -> bool:
        return key in self._silent
