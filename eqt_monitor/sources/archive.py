"""Bounded sources over local files: SDS archives and miniSEED files, globs or directories.

Both read miniSEED robustly (``read_mseed``): a record that fails to decode is skipped with one
warning naming the file and its byte offset, and the rest of the file is used.
"""
from __future__ import annotations

import glob
import io
import logging
import struct
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import obspy
from obspy.io.mseed import InternalMSEEDError, InternalMSEEDWarning
from obspy.io.mseed.core import _is_mseed

from ..errors import UserError
from ..types import StationKey
from .base import Source, channel_pattern, matches, select

log = logging.getLogger(__name__)

MIN_RECORD = 128  # smallest miniSEED 2 record length: the step when searching past garbage


def read_mseed(
    data: str | Path | bytes, name: str | None = None, start: float | None = None, end: float | None = None
) -> obspy.Stream:
    """The decodable records of a miniSEED file (a path) or buffer (bytes) within ``[start, end]``.

    ``name`` labels the data in the warning (defaults to the path). ObsPy reads the whole
    buffer at once; when that raises or libmseed complains (a corrupt header, a record whose
    samples fail to decode or to pass the Steim integrity check), the data is read again
    record by record and the bad records are skipped. Traces are trimmed to the span (no
    sample outside it) but not merged.
    """
    raw = Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)
    label = name or str(data)
    if not raw:
        return obspy.Stream()
    stream = _read_quietly(raw, start, end)
    if stream is not None:
        return trim(stream, start, end)
    stream, bad = _read_by_record(raw)
    if bad:
        offsets = ", ".join(str(o) for o in bad[:10]) + (", ..." if len(bad) > 10 else "")
        log.warning("%s: skipped %d undecodable miniSEED record(s) at byte offset(s) %s", label, len(bad), offsets)
    return trim(stream, start, end)


def trim(stream: obspy.Stream, start: float | None, end: float | None) -> obspy.Stream:
    """``stream`` cut to the samples inside ``[start, end]`` (either may be ``None``), empty traces dropped."""
    if start is None and end is None:
        return stream
    stream.trim(
        obspy.UTCDateTime(start) if start is not None else None,
        obspy.UTCDateTime(end) if end is not None else None,
        nearest_sample=False,
    )
    return obspy.Stream([tr for tr in stream if tr.stats.npts])


def _read_quietly(raw: bytes, start: float | None = None, end: float | None = None) -> obspy.Stream | None:
    """``obspy.read`` of a whole buffer, or ``None`` when it raised or libmseed warned."""
    span = {}
    if start is not None:
        span["starttime"] = obspy.UTCDateTime(start)
    if end is not None:
        span["endtime"] = obspy.UTCDateTime(end)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            stream = obspy.read(io.BytesIO(raw), format="MSEED", **span)
        except (InternalMSEEDError, ValueError, TypeError, struct.error):
            return None
    if any(issubclass(w.category, InternalMSEEDWarning) for w in caught):
        return None
    return stream


def _read_by_record(raw: bytes) -> tuple[obspy.Stream, list[int]]:
    """Decode ``raw`` one record at a time: the good records' traces, and the offsets of bad ones."""
    traces: list[obspy.Trace] = []
    bad: list[int] = []
    offset, in_garbage = 0, False
    while offset < len(raw):
        length = record_length(raw, offset)
        if length is None or offset + length > len(raw):
            if not in_garbage:  # one entry per run of undecodable bytes
                bad.append(offset)
            offset, in_garbage = offset + MIN_RECORD, True
            continue
        record = _read_quietly(raw[offset : offset + length])
        if record is None:
            bad.append(offset)
        else:
            traces.extend(record)
        offset, in_garbage = offset + length, False
    stream = obspy.Stream(traces)
    stream.merge(method=-1)  # join exactly contiguous records again (no data changed)
    return stream, bad


def record_length(raw: bytes, offset: int) -> int | None:
    """Length of the miniSEED 2 record starting at ``offset`` (from blockette 1000), or ``None``
    when no plausible fixed header with a blockette 1000 starts there."""
    head = raw[offset : offset + 48]
    if len(head) < 48 or head[6:7] not in (b"D", b"R", b"Q", b"M") or head[7:8] not in (b" ", b"\x00"):
        return None
    if not all(c in b"0123456789 \x00" for c in head[:6]):
        return None
    for order in (">", "<"):
        year, day = struct.unpack(order + "HH", head[20:24])
        if 1900 <= year <= 2100 and 1 <= day <= 366:
            break
    else:
        return None
    next_blockette = struct.unpack(order + "H", head[46:48])[0]
    seen = 0
    while 48 <= next_blockette < len(raw) - offset - 8 and seen < 16:
        kind, following = struct.unpack(order + "HH", raw[offset + next_blockette : offset + next_blockette + 4])
        if kind == 1000:
            exponent = raw[offset + next_blockette + 6]
            return 1 << exponent if 7 <= exponent <= 20 else None
        if following <= next_blockette:
            return None
        next_blockette, seen = following, seen + 1
    return None


class SDSSource(Source):
    """An SDS archive (``ROOT/YEAR/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YEAR.DOY``), one file per channel and day."""

    #: records near midnight may sit in the previous day's file: look this far back into it
    DAY_BORDER_S = 120.0

    def __init__(self, uri: str, path: str) -> None:
        super().__init__(uri)
        self.root = Path(path).expanduser()
        if not self.root.is_dir():
            raise UserError(f"source {uri!r}: SDS archive directory {str(self.root)!r} does not exist")

    def files(self, key: StationKey, start: float, end: float) -> list[Path]:
        """The day files that may hold samples of ``key`` in ``[start, end]``."""
        first = datetime.fromtimestamp(start - self.DAY_BORDER_S, timezone.utc).date()
        last = datetime.fromtimestamp(end, timezone.utc).date()
        found: list[Path] = []
        day = first
        while day <= last:
            year, doy, cha = day.year, day.timetuple().tm_yday, channel_pattern(key)
            pattern = (
                f"{glob.escape(str(self.root))}/{year}/{key.network}/{key.station}/{cha}.D/"
                f"{key.network}.{key.station}.{key.location}.{cha}.D.{year}.{doy:03d}"
            )
            found.extend(Path(p) for p in sorted(glob.glob(pattern)))
            day += timedelta(days=1)
        return found

    def get_waveforms(self, stations: Sequence[StationKey], start: float, end: float) -> obspy.Stream:
        """Every trace of ``stations`` in ``[start, end]`` from the archive's day files."""
        out = obspy.Stream()
        for key in stations:
            for path in self.files(key, start, end):
                out += select(read_mseed(path, start=start, end=end), [key])
        self._report_missing(stations, out, start, end)
        return out


class FileSource(Source):
    """miniSEED files: one path, a glob (``*.mseed``), or a directory (every miniSEED file under it)."""

    def __init__(self, uri: str, path: str) -> None:
        super().__init__(uri)
        self.paths = self._resolve(uri, path)
        self._index: dict[Path, list[tuple[str, str, str, str, float, float]] | None] | None = None

    @staticmethod
    def _resolve(uri: str, path: str) -> list[Path]:
        target = Path(path).expanduser()
        if target.is_dir():
            files = sorted(p for p in target.rglob("*") if p.is_file() and _is_mseed(str(p)))
            if not files:
                raise UserError(f"source {uri!r}: no miniSEED files under {str(target)!r}")
            return files
        if target.is_file():
            return [target]
        if glob.has_magic(path):
            files = sorted(Path(p) for p in glob.glob(str(target), recursive=True) if Path(p).is_file())
            if not files:
                raise UserError(f"source {uri!r}: no file matches {path!r}")
            return files
        raise UserError(f"source {uri!r}: {str(target)!r} does not exist")

    def _channels(self) -> dict[Path, list[tuple[str, str, str, str, float, float]] | None]:
        """Per file, its channels and time spans from the record headers (``None``: headers unreadable)."""
        if self._index is None:
            self._index = {}
            for path in self.paths:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        heads = obspy.read(str(path), format="MSEED", headonly=True)
                    except Exception:  # a corrupt file: read_mseed deals with it (and warns) later
                        self._index[path] = None
                        continue
                self._index[path] = [
                    (t.stats.network, t.stats.station, t.stats.location, t.stats.channel,
                     t.stats.starttime.timestamp, t.stats.endtime.timestamp)
                    for t in heads
                ]
        return self._index

    def get_waveforms(self, stations: Sequence[StationKey], start: float, end: float) -> obspy.Stream:
        """Every trace of ``stations`` in ``[start, end]`` from the files that hold any."""
        out = obspy.Stream()
        for path, spans in self._channels().items():
            wanted = spans is None or any(
                t0 <= end and t1 >= start and any(matches(k, *nslc) for k in stations)
                for (*nslc, t0, t1) in spans
            )
            if wanted:
                out += select(read_mseed(path, start=start, end=end), stations)
        self._report_missing(stations, out, start, end)
        return out
