"""Live ingest for the daemon: SeedLink streams and FDSN polls hand each trace, with the wall-clock
time it arrived, to one callback (the daemon's queue).

Every ingest knows the stations it serves (``keys``), can be started and stopped, and commits a
resume point per station with ``commit(until)``: data ending by ``until[station]`` (POSIX s) is
durably processed and need not be read again after a restart.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import obspy

from eqt_monitor.errors import UserError
from eqt_monitor.live import metrics
from eqt_monitor.records import StationKey
from eqt_monitor.sources.base import SourceError, matches, open_source
from eqt_monitor.sources.fdsn import FDSNSource

log = logging.getLogger(__name__)

Put = Callable[[obspy.Trace, float], None]  # (trace, arrival wall time)
MAX_POLL_SPAN_S = 3600.0  # one FDSN poll asks for at most this much data per station (catching up in steps)


class SeedLinkIngest:
    """One SeedLink connection for all its stations; resume points go to a state file."""

    def __init__(self, uri: str, keys: Sequence[StationKey], put: Put, state_file: Path, begin: float | None) -> None:
        from eqt_monitor.sources.seedlink import SeedLinkSource

        self.uri, self.keys, self._put, self.state_file = uri, list(keys), put, state_file
        self.source = SeedLinkSource(uri, state_file=state_file, begin=begin, autosave=False, backoff_max=10.0)

    def start(self) -> None:
        self.source.start(self.keys, lambda trace: self._put(trace, time.time()))

    def stop(self) -> None:
        self.source.stop(timeout=5.0)

    def commit(self, until: Mapping[StationKey, float]) -> None:
        """Save the SeedLink sequence numbers of the records ending by ``until`` (per ``NET.STA``)."""
        limits: dict[str, float] = {}
        for key in self.keys:
            sta = f"{key.network}.{key.station}"
            limits[sta] = min(limits.get(sta, float("inf")), until.get(key, float("-inf")))
        self.source.save_state(until=limits)


class FDSNPoller:
    """Polls an FDSN dataselect service: each ``poll`` fetches every station's data since its last
    sample received, in one bulk request. Restarts resume from ``since`` (the daemon's progress)."""

    def __init__(self, uri: str, keys: Sequence[StationKey], put: Put, since: Mapping[StationKey, float]) -> None:
        source = open_source(uri)
        if not isinstance(source, FDSNSource):
            raise UserError(f"source {uri!r}: not an FDSN service")
        self.uri, self.keys, self._put, self.source = uri, list(keys), put, source
        self.since = dict(since)

    def start(self) -> None:
        """Nothing to start: the daemon schedules ``poll``."""

    def stop(self) -> None:
        self.source.close()

    def commit(self, until: Mapping[StationKey, float]) -> None:
        """Nothing to save: a restart resumes from the catalog's progress."""

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
            metrics.ERRORS.labels(kind="fdsn_poll").inc()
            log.warning("%s", exc)
            return 0
        arrived = time.time()
        for trace in sorted(stream, key=lambda tr: tr.stats.endtime):
            s = trace.stats
            trace_end = s.endtime.timestamp + s.delta
            for key in self.keys:
                if matches(key, s.network, s.station, s.location, s.channel):
                    self.since[key] = max(self.since[key], trace_end)
            metrics.observe_data(f"{s.network}.{s.station}.{s.location}", s.npts, trace_end)
            self._put(trace, arrived)
        return len(stream)


Ingest = SeedLinkIngest | FDSNPoller


def open_ingest(uri: str, keys: Sequence[StationKey], put: Put, *, state_dir: Path, begin: float | None,
                resume: Mapping[StationKey, float]) -> Ingest:
    """The live ingest for ``uri``: ``seedlink://`` streams, ``fdsn://``/``fdsns://`` polls.

    ``resume``: per station, where the daemon's own progress says to restart; stations without
    one start at ``begin`` (POSIX s; None = new data only).
    """
    scheme = uri.partition("://")[0].lower()
    if scheme == "seedlink":
        name = uri.partition("://")[2].strip("/").replace(":", "_").replace("/", "_")
        return SeedLinkIngest(uri, keys, put, state_dir / f"seedlink-{name}.json", begin)
    if scheme in ("fdsn", "fdsns"):
        start = time.time() if begin is None else begin
        return FDSNPoller(uri, keys, put, {k: resume.get(k, start) for k in keys})
    raise UserError(f"source {uri!r}: not a live source (use seedlink:// or fdsn://; archives are for replay)")
