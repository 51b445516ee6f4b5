"""FDSN dataselect as a bounded source (one bulk request per read) and as a polled ``LiveSource``."""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping, Sequence

import obspy
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import FDSNException, FDSNNoDataException

from eqt_monitor.records import StationKey
from eqt_monitor.sources.archive import read_mseed
from eqt_monitor.sources.base import LiveOptions, Put, Source, SourceError, channel_pattern, matches, select

log = logging.getLogger(__name__)

MAX_POLL_SPAN_S = 3600.0  # one poll asks for at most this much data per station (catching up in steps)


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
        return self.get_waveforms_since({key: start for key in stations}, end)

    def get_waveforms_since(self, since: Mapping[StationKey, float], end: float) -> obspy.Stream:
        """Each station's traces in ``[since[station], end]``, all in one bulk request (live polling)."""
        if not since:
            return obspy.Stream()
        lines = [line for key, start in since.items() for line in self.bulk_lines([key], start, end)]
        body = io.BytesIO()
        try:
            self.client.get_waveforms_bulk(lines, filename=body)
        except FDSNNoDataException:
            body = io.BytesIO()
        except (FDSNException, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise SourceError(f"source {self.uri!r}: dataselect request to {self.base_url} failed: {reason}") from exc
        start = min(since.values())
        found = select(read_mseed(body.getvalue(), name=f"{self.uri} response", start=start, end=end), list(since))
        self._report_missing(list(since), found, start, end)
        return found


class LiveFDSN:
    """``LiveSource`` polling an FDSN dataselect service: each ``poll`` fetches every station's data
    since its last sample received, in one bulk request. It starts where ``resume`` says (the
    caller's progress), else at ``options.begin`` (None: now); it saves nothing itself."""

    state_file = None

    def __init__(self, uri: str, keys: Sequence[StationKey], put: Put, options: LiveOptions,
                 resume: Mapping[StationKey, float]) -> None:
        self.uri, self.keys, self._put, self.source = uri, list(keys), put, FDSNSource(uri)
        self.poll_every: float | None = options.poll_every
        self.recorder = options.recorder
        start = time.time() if options.begin is None else options.begin
        self.since = {k: resume.get(k, start) for k in self.keys}

    def start(self) -> None:
        """Nothing to start: the caller schedules ``poll``."""

    def stop(self) -> None:
        self.source.close()

    def commit(self, until: Mapping[StationKey, float]) -> None:
        """Nothing to save: a restart resumes from the caller's progress."""

    def positions(self) -> dict[StationKey, float]:
        """Per station, the end of its last sample received."""
        return dict(self.since)

    def poll(self, now: float | None = None) -> int:
        """Fetch and hand on the new data of every station; returns the number of traces."""
        now = time.time() if now is None else now
        since = {k: t for k, t in self.since.items() if t < now}
        if not since:
            return 0
        end = min(now, min(since.values()) + MAX_POLL_SPAN_S)
        try:
            stream = self.source.get_waveforms_since(since, end)
        except SourceError as exc:
            self.recorder.error("fdsn_poll")
            log.warning("%s", exc)
            return 0
        arrived = time.time()
        for trace in stream:
            s = trace.stats
            trace_end = s.endtime.timestamp + s.delta
            for key in self.keys:
                if matches(key, s.network, s.station, s.location, s.channel):
                    self.since[key] = max(self.since[key], trace_end)
            self.recorder.data(f"{s.network}.{s.station}.{s.location}", s.npts, trace_end)
        # A poll returns each channel as one long trace: handed on whole, one after the other, a
        # station's first channel could run minutes ahead of the others when the consumer looks in
        # between, and be taken for the others being dead. In short pieces in time order, the
        # channels of a station advance together, as records from a SeedLink server do.
        pieces = [piece for trace in stream for piece in _pieces(trace, PIECE_S)]
        for piece in sorted(pieces, key=lambda tr: (tr.stats.starttime.ns, tr.id)):
            self._put(piece, arrived)
        return len(stream)
