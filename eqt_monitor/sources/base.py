"""The one interface every waveform source implements, and ``open_source`` choosing one by URI.

Bounded sources (SDS archives, miniSEED files, FDSN dataselect) answer ``get_waveforms`` for a
station set and time span; live sources (SeedLink) also ``stream`` traces as they arrive. Both
hand out plain ObsPy traces: merging, gap handling and resampling are the buffer's job.
"""
from __future__ import annotations

import fnmatch
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence

import obspy

from eqt_monitor.errors import UserError
from eqt_monitor.records import StationKey

log = logging.getLogger(__name__)

SCHEMES = ("sds", "file", "fdsn", "fdsns", "seedlink")


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
    (live ingest asks once per record, so a scan over thousands of stations would not do)."""

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
    """A waveform source: bounded reads by station set and time span, and (live sources) a trace stream."""

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

    def stream(self, stations: Sequence[StationKey]) -> Iterator[obspy.Trace]:
        """Traces of ``stations`` as they arrive (live sources only)."""
        raise UserError(f"{self.uri}: not a live source (it serves bounded time spans only)")

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


def open_source(uri: str) -> Source:
    """The source a URI names: ``sds://PATH``, ``file://PATH-OR-GLOB``, ``fdsn://HOST:PORT`` (http),
    ``fdsns://HOST:PORT`` (https) or ``seedlink://HOST:PORT``.

    ``PATH`` may be absolute (``sds:///data/sds``) or relative (``sds://../archive``). A live
    source module defines ``open_uri(uri) -> Source``. Raises ``UserError`` naming the URI for an
    unknown scheme or a path that does not exist.
    """
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES or not rest:
        raise UserError(f"source {uri!r}: expected one of {', '.join(s + '://' for s in SCHEMES)} followed by a path or host:port")
    if scheme == "sds":
        from eqt_monitor.sources.archive import SDSSource

        return SDSSource(uri, rest)
    if scheme == "file":
        from eqt_monitor.sources.archive import FileSource

        return FileSource(uri, rest)
    if scheme in ("fdsn", "fdsns"):
        from eqt_monitor.sources.fdsn import FDSNSource

        return FDSNSource(uri, ("https://" if scheme == "fdsns" else "http://") + rest)
    from eqt_monitor.sources import seedlink  # someone else's module: imported only when asked for

    return seedlink.open_uri(uri)
