"""The daemon's per-station intake: raw traces → station buffers → segments, with the metrics and
log lines for what the buffers found (gaps, overlaps, bad records, rate changes) and for
stations that fall silent."""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable

import obspy

from eqt_monitor.live import metrics
from eqt_monitor.pipeline.buffer import BufferStats, GapPolicy, StationBuffer
from eqt_monitor.records import SAMPLING_RATE, Segment, StationKey
from eqt_monitor.sources.base import StationLookup

log = logging.getLogger(__name__)


class Intake:
    """Buffers of the configured stations; ``add`` a trace, then ``ready()`` for the segments."""

    def __init__(self, keys: Iterable[StationKey], policy: GapPolicy, silent_after: float) -> None:
        self.policy, self.silent_after = policy, silent_after
        self.buffers: dict[StationKey, StationBuffer] = {}
        self._stats: dict[StationKey, BufferStats] = {}
        self.last_arrival: dict[StationKey, float] = {}  # wall clock
        self._watch_from: dict[StationKey, float] = {}  # wall clock: silence counts from here
        self._silent: set[StationKey] = set()
        self._overlapping: set[StationKey] = set()
        self._touched: set[StationKey] = set()
        self._lookup = StationLookup()
        for key in keys:
            self.add_station(key)

    @property
    def keys(self) -> list[StationKey]:
        return sorted(self.buffers, key=str)

    def add_station(self, key: StationKey) -> None:
        """Start buffering ``key`` (a new station, or one reset after a failure)."""
        self.buffers[key] = StationBuffer(key, policy=self.policy)
        self._lookup.add(key)
        self._stats[key] = BufferStats()
        self._watch_from.setdefault(key, time.time())

    def remove_station(self, key: StationKey) -> None:
        """Forget a station and its metric series."""
        for table in (self.buffers, self._stats, self.last_arrival, self._watch_from):
            table.pop(key, None)
        self._silent.discard(key)
        self._overlapping.discard(key)
        self._touched.discard(key)
        self._lookup.remove(key)
        metrics.forget_station(key.id)

    def station_of(self, trace: obspy.Trace) -> StationKey | None:
        """The configured station a trace belongs to (None: not configured)."""
        return self._lookup.find_trace(trace)

    def add(self, trace: obspy.Trace, arrived: float) -> StationKey | None:
        """Buffer one trace that arrived at wall time ``arrived``; returns its station."""
        key = self.station_of(trace)
        if key is None:
            metrics.ERRORS.labels(kind="unexpected_stream").inc()
            log.debug("dropping data of unconfigured stream %s", trace.id)
            return None
        self.buffers[key].add(trace)
        self.last_arrival[key] = max(self.last_arrival.get(key, arrived), arrived)
        if key in self._silent:
            self._silent.discard(key)
            metrics.STATION_SILENT.labels(station=key.id).set(0)
            log.info("station %s: data again", key)
        self._report(key)
        self._touched.add(key)
        return key

    def ready(self) -> list[Segment]:
        """Segments no later data can change, of the stations that got data since the last call."""
        out = []
        for key in sorted(self._touched, key=str):
            buffer = self.buffers[key]
            out += buffer.pop_ready()
            self._report(key, record=False)  # gaps that end a stretch are found while handing data on
            capacity = self.policy.dead_channel_s * SAMPLING_RATE
            metrics.BUFFER_FILL.labels(station=key.id).set(min(1.0, buffer.held_samples / capacity))
        self._touched.clear()
        return out

    def _report(self, key: StationKey, record: bool = True) -> None:
        """Metrics and log lines for what the buffer counted since the last call (``record``: the
        call follows one added record, which ends an overlap episode when it repeats nothing)."""
        now, before = self.buffers[key].stats, self._stats[key]
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
