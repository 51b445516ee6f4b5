"""FDSN dataselect as a bounded source (one bulk request per read) and as a polled ``LiveSource``."""
from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Mapping, Sequence

import obspy
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import FDSNException, FDSNNoDataException

from eqt_monitor.records import StationKey
from eqt_monitor.sources.archive import read_mseed, trim
from eqt_monitor.sources.base import LiveOptions, Put, Source, SourceError, StationLookup, channel_pattern

log = logging.getLogger(__name__)

MAX_POLL_SPAN_S = 3600.0  # one poll asks for at most this much data per station (catching up in steps)
LATE_S = 300.0  # a station or channel with nothing new is asked again for at most this much time before now


PIECE_S = 10.0  # seconds of data per piece a poll hands on (well under a buffer's dead_channel_s)


def _pieces(trace: obspy.Trace, piece_s: float) -> list[obspy.Trace]:
    """``trace`` cut into consecutive pieces of ``piece_s`` seconds (views of its samples)."""
    s = trace.stats
    step = max(1, int(round(piece_s * s.sampling_rate))) if s.sampling_rate > 0 else max(1, s.npts)
    if s.npts <= step:
        return [trace]
    header = {"network": s.network, "station": s.station, "location": s.location, "channel": s.channel,
              "sampling_rate": s.sampling_rate}
    return [obspy.Trace(trace.data[i:i + step], header={**header, "starttime": s.starttime + i / s.sampling_rate})
            for i in range(0, s.npts, step)]


class FDSNSource(Source):
    """The dataselect endpoint of the FDSN web service ``uri`` names: ``fdsn://HOST:PORT`` over http,
    ``fdsns://HOST:PORT`` over https (``base_url``)."""

    def __init__(self, uri: str, timeout: float = 120.0) -> None:
        super().__init__(uri)
        scheme, _, rest = uri.partition("://")
        self.base_url = ("https://" if scheme.lower() == "fdsns" else "http://") + rest
        # service discovery asks for station/event endpoints a plain dataselect server lacks
        self.client = Client(self.base_url, timeout=timeout, _discover_services=False)

    def bulk_lines(self, stations: Sequence[StationKey], start: float, end: float) -> list[tuple]:
        """The bulk request: one ``(net, sta, loc, cha, start, end)`` line per station ("--" = empty location)."""
        t0, t1 = obspy.UTCDateTime(start), obspy.UTCDateTime(end)
        return [(k.network, k.station, k.location or "--", channel_pattern(k), t0, t1) for k in stations]

    def get_waveforms(self, stations: Sequence[StationKey], start: float, end: float) -> obspy.Stream:
        """Every trace of ``stations`` in ``[start, end]``, fetched in one bulk request.

        The response bytes go through the same robust miniSEED reader as files, so a corrupt
        record costs that record only. An unreachable or failing server raises ``SourceError``.
        """
        return self.get_waveforms_spans({key: (start, end) for key in stations})

    def get_waveforms_spans(self, spans: Mapping[StationKey, tuple[float, float]]) -> obspy.Stream:
        """Each station's traces in its own span ``[start, end]``, all in one bulk request (live polling)."""
        if not spans:
            return obspy.Stream()
        lines = [line for key, (start, end) in spans.items() for line in self.bulk_lines([key], start, end)]
        body = io.BytesIO()
        try:
            self.client.get_waveforms_bulk(lines, filename=body)
        except FDSNNoDataException:
            body = io.BytesIO()
        except (FDSNException, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise SourceError(f"source {self.uri!r}: dataselect request to {self.base_url} failed: {reason}") from exc
        start, end = min(s for s, _ in spans.values()), max(e for _, e in spans.values())
        lookup = StationLookup(spans)
        found = obspy.Stream()
        for trace in read_mseed(body.getvalue(), name=f"{self.uri} response", start=start, end=end):
            key = lookup.find_trace(trace)
            if key is not None:
                found += trim(obspy.Stream([trace]), *spans[key])
        self._report_missing(list(spans), found, start, end)
        return found


class LiveFDSN:
    """``LiveSource`` polling an FDSN dataselect service: each ``poll`` fetches, in one bulk request,
    every station's data from the end of the last sample received on its least advanced channel
    (at most ``MAX_POLL_SPAN_S`` per station) and hands on what is new per channel. It starts where
    ``resume`` says (the caller's progress), else at ``options.begin`` (None: now); it saves nothing
    itself. A station or channel the server has nothing for moves on to ``LATE_S`` before now, so
    it neither stalls the others nor is asked for ever older data (docs/DESIGN.md, Sources)."""

    state_file = None

    def __init__(self, uri: str, keys: Sequence[StationKey], put: Put, options: LiveOptions,
                 resume: Mapping[StationKey, float]) -> None:
        self.uri, self.keys, self._put, self.source = uri, list(keys), put, FDSNSource(uri)
        self.poll_every: float | None = options.poll_every
        self.recorder = options.recorder
        start = time.time() if options.begin is None else options.begin
        self._lookup = StationLookup(self.keys)
        self._floor = {k: resume.get(k, start) for k in self.keys}  # where a station's channels not seen yet start
        self._next: dict[StationKey, dict[str, float]] = {k: {} for k in self.keys}  # per channel id: its data's end

    def start(self) -> None:
        """Nothing to start: the caller schedules ``poll``."""

    def stop(self) -> None:
        self.source.close()

    def commit(self, until: Mapping[StationKey, float]) -> None:
        """Nothing to save: a restart resumes from the caller's progress."""

    def _since(self, key: StationKey) -> float:
        """Where the station's next request starts: its least advanced channel's end."""
        return min(self._next[key].values(), default=self._floor[key])

    def positions(self) -> dict[StationKey, float]:
        """Per station, the end of the data received on its least advanced channel."""
        return {k: self._since(k) for k in self.keys}

    def poll(self, now: float | None = None) -> int:
        """Fetch and hand on the new data of every station; returns the number of traces."""
        now = time.time() if now is None else now
        spans = {k: (since, min(now, since + MAX_POLL_SPAN_S)) for k in self.keys if (since := self._since(k)) < now}
        if not spans:
            return 0
        try:
            stream = self.source.get_waveforms_spans(spans)
        except SourceError as exc:
            self.recorder.error("fdsn_poll")
            log.warning("%s", exc)
            return 0
        arrived = time.time()
        new = self._new_data(stream)
        for key, (_, end) in spans.items():
            self._move_silent(key, {tr.id for tr in new}, min(end, now - LATE_S))
        for trace in new:
            s = trace.stats
            self.recorder.data(f"{s.network}.{s.station}.{s.location}", s.npts, s.endtime.timestamp + s.delta)
        # A poll returns each channel as one long trace: handed on whole, one after the other, a
        # station's first channel could run minutes ahead of the others when the consumer looks in
        # between, and be taken for the others being dead. In short pieces in time order, the
        # channels of a station advance together, as records from a SeedLink server do.
        pieces = [piece for trace in new for piece in _pieces(trace, PIECE_S)]
        for piece in sorted(pieces, key=lambda tr: (tr.stats.starttime.ns, tr.id)):
            self._put(piece, arrived)
        return len(new)

    def _new_data(self, stream: obspy.Stream) -> list[obspy.Trace]:
        """The parts of ``stream`` after each channel's data received so far (a request starts at
        the station's least advanced channel, so the others come again); advances the channels."""
        new = []
        for trace in sorted(stream, key=lambda tr: (tr.id, tr.stats.starttime.ns)):
            key = self._lookup.find_trace(trace)
            if key is None:
                continue
            ends, s = self._next[key], trace.stats
            if trace.id in ends:  # half a sample early: the float end must not drop its next sample
                trace = trace.slice(obspy.UTCDateTime(ends[trace.id] - s.delta / 2), nearest_sample=False)
            if trace.stats.npts:
                new.append(trace)
                ends[trace.id] = max(ends.get(trace.id, -math.inf), trace.stats.endtime.timestamp + s.delta)
        return new

    def _move_silent(self, key: StationKey, arrived: set[str], floor: float) -> None:
        """Move the station's channels without new data (or the station, none seen yet) on to ``floor``."""
        ends = self._next[key]
        for channel_id in ends.keys() - arrived:
            ends[channel_id] = max(ends[channel_id], floor)
        if not ends:
            self._floor[key] = max(self._floor[key], floor)
