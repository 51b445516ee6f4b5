"""The two interfaces of waveform sources (``registry`` picks the classes by URI scheme).

``Source``: bounded reads (SDS archives, miniSEED files, FDSN dataselect, a SeedLink server's
buffer) answer ``get_waveforms`` for a station set and time span (replay, plot, magnitudes).
``LiveSource``: a feed of a set of stations (SeedLink streaming, FDSN polling) hands each trace
as it arrives to a callback (the daemon's queue). Both hand out plain ObsPy traces: merging,
gap handling and resampling are the buffer's job.
"""
from __future__ import annotations

import fnmatch
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import obspy

from eqt_monitor.errors import UserError
from eqt_monitor.records import NullRecorder, Recorder, StationKey

log = logging.getLogger(__name__)

Put = Callable[[obspy.Trace, float], None]  # a live source's callback: (trace, wall-clock time it arrived)


class SourceError(UserError):
    """A source that cannot be used (unreachable server, unreadable archive); names the URI."""


def channel_pattern(key: StationKey) -> str:
    """The channel pattern a station selects: ``channel_prefix + "?"`` (``"*"`` when it has no prefix)."""
    return f"{key.channel_prefix}?" if key.channel_prefix else "*"


def matches(key: StationKey, network: str, station: str, location: str, channel: str) -> bool:
    """Whether a channel ``NET.STA.LOC.CHA`` belongs to station ``key``."""
    return (
        network == key.network
        and station == key.station
        and location == key.location
        and fnmatch.fnmatchcase(channel, channel_pattern(key))
    )


class StationLookup:
    """Which of a set of stations a channel belongs to, in constant time per known channel id
    (live sources ask once per record, so a scan over thousands of stations would not do)."""

    def __init__(self, stations: Iterable[StationKey] = ()) -> None:
        self._by_station: dict[tuple[str, str, str], list[StationKey]] = {}
        self._by_channel: dict[tuple[str, str, str, str], StationKey | None] = {}
        for key in stations:
            self.add(key)

    def add(self, key: StationKey) -> None:
        """Include ``key`` (again: no effect)."""
        group = self._by_station.setdefault((key.network, key.station, key.location), [])
        if key not in group:
            group.append(key)
            self._by_channel.clear()

    def remove(self, key: StationKey) -> None:
        """Leave ``key`` out from now on."""
        group = self._by_station.get((key.network, key.station, key.location), [])
        if key in group:
            group.remove(key)
            self._by_channel.clear()

    def find(self, network: str, station: str, location: str, channel: str) -> StationKey | None:
        """The first station (in the order added) that channel ``NET.STA.LOC.CHA`` belongs to, or None."""
        channel_id = (network, station, location, channel)
        if channel_id not in self._by_channel:
            group = self._by_station.get((network, station, location), [])
            self._by_channel[channel_id] = next((k for k in group if matches(k, *channel_id)), None)
        return self._by_channel[channel_id]

    def find_trace(self, trace: obspy.Trace) -> StationKey | None:
        """The station ``trace`` belongs to, or None."""
        s = trace.stats
        return self.find(s.network, s.station, s.location, s.channel)


def select(stream: obspy.Stream, stations: Sequence[StationKey]) -> obspy.Stream:
    """The traces of ``stream`` that belong to any of ``stations`` (same objects, no copy)."""
    lookup = StationLookup(stations)
    return obspy.Stream([tr for tr in stream if lookup.find_trace(tr) is not None])


class Source(ABC):
    """A bounded waveform source: reads by station set and time span."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.report_missing = True  # False: the caller reports stations without data itself (replay)
        self._reported_empty: set[StationKey] = set()

    @abstractmethod
    def get_waveforms(self, stations: Sequence[StationKey], start: float, end: float) -> obspy.Stream:
        """Every trace of ``stations`` with samples in ``[start, end]`` (POSIX seconds), trimmed to it.

        A station without data contributes nothing (logged once per source); the traces are not
        merged (records may overlap, repeat or leave gaps: the buffer deals with that).
        """

    def might_have_data(self, stations: Sequence[StationKey], start: float, end: float) -> bool:
        """A cheap check, without decoding anything, that ``get_waveforms`` could return data
        (``False`` only when it certainly cannot, e.g. no archive file covers the span)."""
        return True

    def close(self) -> None:
        """Release connections or files (no-op for sources that hold none)."""

    def _report_missing(self, stations: Sequence[StationKey], found: obspy.Stream, start: float, end: float) -> None:
        """Log once per station (per source) each station that ``found`` has no trace for."""
        if not self.report_missing:
            return
        for key in stations:
            if key in self._reported_empty:
                continue
            if not select(found, [key]):
                self._reported_empty.add(key)
                log.warning(
                    "%s: no data for %s between %s and %s",
                    self.uri, key, obspy.UTCDateTime(start), obspy.UTCDateTime(end),
                )

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class LiveOptions:
    """What every live source of a service shares."""

    state_dir: Path  # where a source keeps resume points of its own (SeedLink sequence numbers)
    begin: float | None = None  # POSIX s where stations without a resume point start; None: new data only
    poll_every: float = 30.0  # seconds between the polls of a polled source
    recorder: Recorder = field(default_factory=NullRecorder)  # where errors, data and reconnects are reported


class LiveSource(Protocol):
    """A live feed of stations ``keys`` from ``uri``, built as ``cls(uri, keys, put, options, resume)``
    (``resume``: per station, where the caller's own progress says to restart).

    It hands each trace to ``put`` from ``start()`` until ``stop()``: on a thread of its own
    (``poll_every`` None), or from ``poll()``, which the caller runs every ``poll_every`` s.
    ``commit(until)``: data ending by ``until[station]`` (POSIX s) is durably processed and need
    not be read again after a restart; it writes to ``state_file`` (None: it writes nothing).
    ``positions()``: per station, where a replacement source (a reload) should resume.
    """

    uri: str
    keys: list[StationKey]
    poll_every: float | None
    state_file: Path | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def poll(self) -> int: ...

    def commit(self, until: Mapping[StationKey, float]) -> None: ...

    def positions(self) -> dict[StationKey, float]: ...
