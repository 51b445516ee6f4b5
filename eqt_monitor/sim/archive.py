"""The archive side of ``eqt-monitor simulate``: what an archive holds, and its data cut into
chunks of 512-byte miniSEED records in release order.

The archive is cut into fixed chunks on a grid anchored at the start time and every chunk's
traces are packed into records, sorted by end time (when a digitiser would have finished them),
so a server restarted with the same archive, start time and chunk length releases the same
records in the same order.
"""
from __future__ import annotations

import glob
import io
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from obspy import Trace, UTCDateTime, read

from eqt_monitor.errors import UserError
from eqt_monitor.records import StationKey
from eqt_monitor.sources import open_source
from eqt_monitor.sources.archive import SDSSource
from eqt_monitor.sources.registry import path_schemes

log = logging.getLogger(__name__)

RECORD_LENGTH = 512


@dataclass(frozen=True)
class Record:
    """One 512-byte miniSEED data record and where it sits in time (POSIX seconds)."""

    network: str
    station: str
    location: str
    channel: str
    start: float  # first sample
    end: float  # just after the last sample: the moment a digitiser would have finished it
    data: bytes


def _encoding_for(data: np.ndarray) -> str:
    if data.dtype.kind in "iu":
        return "STEIM2"
    return "FLOAT32" if data.dtype == np.float32 else "FLOAT64"


def pack_records(trace: Trace) -> list[Record]:
    """Pack a trace into 512-byte miniSEED records (Steim-2 for integers; lossless)."""
    if trace.stats.npts == 0:
        return []
    trace = trace.copy()
    if trace.data.dtype.kind in "iu":
        trace.data = trace.data.astype(np.int32)
    buf = io.BytesIO()
    try:
        trace.write(buf, format="MSEED", reclen=RECORD_LENGTH, encoding=_encoding_for(trace.data), byteorder=">")
    except Exception:  # Steim-2 cannot hold differences beyond 30 bits: fall back to plain int32
        buf = io.BytesIO()
        trace.write(buf, format="MSEED", reclen=RECORD_LENGTH, encoding="INT32", byteorder=">")
    raw = buf.getvalue()
    s = trace.stats
    t0, rate = s.starttime.timestamp, s.sampling_rate
    records, offset = [], 0
    for pos in range(0, len(raw), RECORD_LENGTH):
        rec = raw[pos:pos + RECORD_LENGTH]
        (nsamples,) = struct.unpack(">H", rec[30:32])  # fixed header: number of samples
        start = t0 + offset / rate
        offset += nsamples
        records.append(Record(s.network, s.station, s.location, s.channel, start, t0 + offset / rate, rec))
    return records


def _cut(trace: Trace, start: float, end: float) -> Trace | None:
    """The samples of ``trace`` at times in ``[start, end)`` (no sample lands in two chunks)."""
    t0, rate = trace.stats.starttime.timestamp, trace.stats.sampling_rate
    i0 = max(0, int(np.ceil((start - t0) * rate - 1e-6)))
    i1 = min(trace.stats.npts, int(np.ceil((end - t0) * rate - 1e-6)))
    if i1 <= i0:
        return None
    out = Trace(trace.data[i0:i1].copy(), header=dict(trace.stats))
    out.stats.starttime = trace.stats.starttime + i0 / rate
    return out


class Archive:
    """An archive (``sds://`` or ``file://``) read through ``open_source``, plus what it holds and when."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        archives = path_schemes()
        if uri.partition("://")[0].lower() not in archives:
            named = " and ".join(f"{name}://" for name in archives)
            raise UserError(f"simulate: --source {uri!r}: only {named} archives can be simulated")
        self.source = open_source(uri)
        if isinstance(self.source, SDSSource):
            self.channels, self.span = _sds_contents(self.source.root)
        else:
            self.channels, self.span = _headers_contents(list(self.source.paths))
        if not self.channels:
            raise UserError(f"simulate: --source {uri!r} holds no readable miniSEED data")
        self.keys = sorted({StationKey(n, s, loc, cha[:2]) for n, s, loc, cha in self.channels})

    def read(self, start: float, end: float) -> list[Trace]:
        """Every trace's samples in ``[start, end)`` (half-open: no sample lands in two chunks)."""
        cuts = (_cut(tr, start, end) for tr in self.source.get_waveforms(self.keys, start, end))
        return sorted((t for t in cuts if t is not None), key=lambda t: (t.id, t.stats.starttime))


def _headers_contents(paths: list[Path | str]) -> tuple[list[tuple[str, str, str, str]], tuple[float, float]]:
    """Channels and overall ``(first sample, end of last sample)`` from the record headers of ``paths``."""
    channels, first, last = set(), float("inf"), float("-inf")
    for path in paths:
        try:
            heads = read(str(path), format="MSEED", headonly=True)
        except Exception as exc:  # a corrupt file costs its own data only
            log.warning("simulate: skipping unreadable file %s: %s", path, exc)
            continue
        for tr in heads:
            s = tr.stats
            channels.add((s.network, s.station, s.location, s.channel))
            first, last = min(first, s.starttime.timestamp), max(last, s.endtime.timestamp + s.delta)
    return sorted(channels), (first, last)


def _sds_contents(root: Path) -> tuple[list[tuple[str, str, str, str]], tuple[float, float]]:
    """Channels from an SDS tree's file names (``NET.STA.LOC.CHA.TYPE.YEAR.DOY``); span from its first
    and last day files' headers."""
    days: dict[str, float] = {}
    channels = set()
    for path in glob.glob(os.path.join(glob.escape(str(root)), "*", "*", "*", "*.*", "*.*.*.*.*.*.*")):
        net, sta, loc, cha, _, year, doy = os.path.basename(path).split(".")
        if year.isdigit() and doy.isdigit():
            channels.add((net, sta, loc, cha))
            days[path] = UTCDateTime(year=int(year), julday=int(doy)).timestamp
    if not days:
        return [], (0.0, 0.0)
    first_day, last_day = min(days.values()), max(days.values())
    _, (first, _) = _headers_contents([p for p, d in days.items() if d == first_day])
    _, (_, last) = _headers_contents([p for p, d in days.items() if d == last_day])
    return sorted(channels), (first, last)


def archive_records(archive: Archive, start: float, end: float, chunk: float) -> Iterator[tuple[float, list[Record]]]:
    """``(chunk_end, records)`` for consecutive chunks of ``[start, end)``, records in release order.

    Every record of a chunk starts at or after the chunk start and ends by the chunk end, so
    concatenating the chunks keeps the whole sequence sorted by end time.
    """
    a = start
    while a < end:
        b = min(a + chunk, end)
        records = [rec for tr in archive.read(a, b) for rec in pack_records(tr)]
        records.sort(key=lambda r: (r.end, r.network, r.station, r.location, r.channel, r.start))
        yield b, records
        a = b
