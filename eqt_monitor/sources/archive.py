"""Bounded sources over local files: SDS archives and miniSEED files, globs or directories.

Both read miniSEED robustly (``read_mseed``): a record that fails to decode is skipped with one
warning naming the file and its byte offset, and the rest of the file is used.
"""
from __future__ import annotations

import glob
import io
import logging
import re
import struct
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import obspy
from obspy.io.mseed import InternalMSEEDError, InternalMSEEDWarning
from obspy.io.mseed.core import _is_mseed

from eqt_monitor.errors import BAD_DATA, UserError
from eqt_monitor.records import StationKey
from eqt_monitor.sources.base import Source, channel_pattern, matches, select

log = logging.getLogger(__name__)

MIN_RECORD = 128  # smallest miniSEED 2 record length (2^7)
MAX_RECORD = 1 << 16  # largest (2^16)
BATCH_RECORDS = 64  # records decoded per ObsPy call on the record-by-record path (bisected on a failure)
# a fixed header's first 8 bytes: 6-character sequence number, quality indicator, reserved byte
_HEADER_START = re.compile(rb"[0-9 \x00]{6}[DRQM][ \x00]")
_CODE_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 \x00")


@dataclass
class _Skip:
    """A run of bytes no record could be decoded from: ``[lo, hi)``, and the traces kept around it."""

    lo: int
    hi: int
    before: obspy.Trace | None
    after: obspy.Trace | None = None
    header_samples: int = 0  # samples that the skipped records' own headers claim

    def samples(self) -> int:
        """Samples lost: the time gap between the records kept on either side when they are of one
        channel, else what the skipped records' headers claim."""
        b, a = self.before, self.after
        if b is not None and a is not None and b.id == a.id and b.stats.sampling_rate == a.stats.sampling_rate:
            return max(0, int(round((a.stats.starttime - b.stats.endtime) * b.stats.sampling_rate)) - 1)
        return self.header_samples


def read_mseed(
    data: str | Path | bytes, name: str | None = None, start: float | None = None, end: float | None = None
) -> obspy.Stream:
    """The decodable records of a miniSEED file (a path) or buffer (bytes) within ``[start, end]``.

    ``name`` labels the data in the warning (defaults to the path). ObsPy reads the whole
    buffer at once; when that raises or libmseed complains (a corrupt header, a record whose
    samples fail to decode or to pass the Steim integrity check), the data is read again
    record by record: bad records and stray bytes are skipped, the next record found by
    scanning byte by byte, and one warning says what was skipped. Traces are trimmed to the
    span (no sample outside it) but not merged.
    """
    raw = Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)
    label = name or str(data)
    if not raw:
        return obspy.Stream()
    stream = _read_quietly(raw, start, end)
    if stream is not None:
        return trim(stream, start, end)
    stream, skips = _read_by_record(raw)
    if skips:
        spans = ", ".join(f"{s.lo}-{s.hi}" for s in skips[:10]) + (", ..." if len(skips) > 10 else "")
        log.warning("%s: skipped %d undecodable stretch(es) of miniSEED, %d bytes, about %d samples, at byte offsets %s; "
                    "kept %d samples", label, len(skips), sum(s.hi - s.lo for s in skips),
                    sum(s.samples() for s in skips), spans, sum(tr.stats.npts for tr in stream), extra=BAD_DATA)
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


class DecodedFiles:
    """Damaged miniSEED files decoded once and kept while a source is open, so that a replay
    reading a day file in many chunks repairs it (and warns about its damage) once, not once per
    chunk. A clean file is read for each span with ObsPy's time selection (only the records in
    the span are unpacked) and nothing of it is kept: memory stays with the damaged files.

    A kept file is read again when its size or modification time changes (a file still being
    written). Bounded by ``max_bytes`` of sample data: least recently used files go first, and
    ``forget_before(t)`` drops files whose data all ends before ``t`` (a replay moves forward).
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._files: OrderedDict[Path, tuple[tuple[int, int], obspy.Stream, int]] = OrderedDict()
        self.reads = 0  # damaged files decoded record by record

    def get(self, path: Path, start: float, end: float) -> obspy.Stream:
        """The samples of ``path`` inside ``[start, end]`` (copies, for a kept file)."""
        info = path.stat()
        version = (info.st_size, info.st_mtime_ns)
        entry = self._files.get(path)
        if entry is None or entry[0] != version:
            clean = _read_quietly(path.read_bytes(), start, end)
            if clean is not None:
                return trim(clean, start, end)
            self.reads += 1
            stream = read_mseed(path)
            entry = (version, stream, sum(tr.data.nbytes for tr in stream))
            self._files[path] = entry
            while len(self._files) > 1 and sum(e[2] for e in self._files.values()) > self.max_bytes:
                self._files.popitem(last=False)
        self._files.move_to_end(path)
        t0, t1 = obspy.UTCDateTime(start), obspy.UTCDateTime(end)
        cut = (tr.slice(t0, t1, nearest_sample=False) for tr in entry[1])
        return obspy.Stream([tr.copy() for tr in cut if tr.stats.npts])

    def forget_before(self, time: float) -> None:
        """Drop every file whose last sample is before ``time``."""
        for path, (_, stream, _) in list(self._files.items()):
            if all(tr.stats.endtime.timestamp < time for tr in stream):
                del self._files[path]

    def clear(self) -> None:
        """Drop every file."""
        self._files.clear()


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


def _read_by_record(raw: bytes) -> tuple[obspy.Stream, list[_Skip]]:
    """Decode ``raw`` a run of records at a time (bisecting a run that fails down to its bad
    record); past a bad record or stray bytes, scan byte by byte for the next record that
    decodes. The good records' traces, and the skipped byte runs."""
    traces: list[obspy.Trace] = []
    skips: list[_Skip] = []
    offset = 0
    while offset < len(raw):
        run = _chained_records(raw, offset)
        good, bad = _decode_run(raw, run)
        if good:
            _after(skips, good[0])
            traces.extend(good)
        if bad is None:
            offset = run[-1][0] + run[-1][1]
            continue
        lo = bad[0]
        resume = _next_record(raw, lo + 1)
        claimed = _header_samples(raw, lo)
        if skips and skips[-1].hi == lo and skips[-1].after is None:
            skips[-1].hi, skips[-1].header_samples = resume, skips[-1].header_samples + claimed
        else:
            skips.append(_Skip(lo, resume, traces[-1] if traces else None, header_samples=claimed))
        offset = resume
    stream = obspy.Stream(traces)
    stream.merge(method=-1)  # join exactly contiguous records again (no data changed)
    return stream, skips


def _after(skips: list[_Skip], first: obspy.Trace) -> None:
    """Note ``first`` as the trace after the latest skip when none follows it yet."""
    if skips and skips[-1].after is None:
        skips[-1].after = first


def _chained_records(raw: bytes, offset: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of up to ``BATCH_RECORDS`` records whose headers follow one another from
    ``offset``; a one-element run of length 0 when no plausible header starts there."""
    run: list[tuple[int, int]] = []
    pos = offset
    while len(run) < BATCH_RECORDS and (length := record_length(raw, pos)) is not None and pos + length <= len(raw):
        run.append((pos, length))
        pos += length
    return run or [(offset, 0)]


def _decode_run(raw: bytes, run: list[tuple[int, int]]) -> tuple[list[obspy.Trace], tuple[int, int] | None]:
    """The traces of the records of ``run`` up to its first bad one, and that one (``None``: all good)."""
    lo, hi = run[0][0], run[-1][0] + run[-1][1]
    stream = _read_quietly(raw[lo:hi]) if hi > lo else None
    if stream is not None:
        return list(stream), None
    if len(run) == 1:
        return [], run[0]
    half = len(run) // 2
    good, bad = _decode_run(raw, run[:half])
    if bad is not None:
        return good, bad
    rest, bad = _decode_run(raw, run[half:])
    return good + rest, bad


def _next_record(raw: bytes, offset: int) -> int:
    """Offset of the first record at or after ``offset`` with a plausible header that decodes
    (``len(raw)`` when there is none)."""
    for match in _HEADER_START.finditer(raw, offset):
        pos = match.start()
        length = record_length(raw, pos)
        if length is not None and pos + length <= len(raw) and _read_quietly(raw[pos : pos + length]) is not None:
            return pos
    return len(raw)


def _header_samples(raw: bytes, offset: int) -> int:
    """The sample count a plausible fixed header at ``offset`` claims (0 when there is none)."""
    order = _byte_order(raw, offset)
    return struct.unpack(order + "H", raw[offset + 30 : offset + 32])[0] if order else 0


def _byte_order(raw: bytes, offset: int) -> str | None:
    """``">"`` or ``"<"`` when a plausible miniSEED 2 fixed header starts at ``offset``, else ``None``:
    sequence number of digits/spaces, quality D/R/Q/M, reserved space/NUL, station, location,
    channel and network of letters, digits and spaces, and a plausible BTIME."""
    head = raw[offset : offset + 48]
    if len(head) < 48 or head[6:7] not in (b"D", b"R", b"Q", b"M") or head[7:8] not in (b" ", b"\x00"):
        return None
    if not all(c in b"0123456789 \x00" for c in head[:6]) or not all(c in _CODE_CHARS for c in head[8:20]):
        return None
    for order in (">", "<"):
        year, day, hour, minute, second, _, _ = struct.unpack(order + "HHBBBBH", head[20:30])
        if 1900 <= year <= 2100 and 1 <= day <= 366 and hour < 24 and minute < 60 and second <= 60:
            return order
    return None


def record_length(raw: bytes, offset: int) -> int | None:
    """Length of the miniSEED 2 record starting at ``offset`` (from blockette 1000, 2^7..2^16), or
    ``None`` when no plausible fixed header with a blockette 1000 starts there."""
    order = _byte_order(raw, offset)
    if order is None:
        return None
    next_blockette = struct.unpack(order + "H", raw[offset + 46 : offset + 48])[0]
    seen = 0
    while 48 <= next_blockette < len(raw) - offset - 8 and seen < 16:
        kind, following = struct.unpack(order + "HH", raw[offset + next_blockette : offset + next_blockette + 4])
        if kind == 1000:
            length = 1 << raw[offset + next_blockette + 6]
            return length if MIN_RECORD <= length <= MAX_RECORD else None
        if following <= next_blockette:
            return None
        next_blockette, seen = following, seen + 1
    return None


class _FilesSource(Source):
    """A source over local miniSEED files, each decoded once while the source is open."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.decoded = DecodedFiles()

    def close(self) -> None:
        """Drop the decoded files."""
        self.decoded.clear()


class SDSSource(_FilesSource):
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

    def might_have_data(self, stations: Sequence[StationKey], start: float, end: float) -> bool:
        """Whether any day file of ``stations`` exists for the span."""
        return any(self.files(key, start, end) for key in stations)

    def get_waveforms(self, stations: Sequence[StationKey], start: float, end: float) -> obspy.Stream:
        """Every trace of ``stations`` in ``[start, end]`` from the archive's day files."""
        out = obspy.Stream()
        self.decoded.forget_before(start - self.DAY_BORDER_S)
        for key in stations:
            for path in self.files(key, start, end):
                out += select(self.decoded.get(path, start, end), [key])
        self._report_missing(stations, out, start, end)
        return out


class FileSource(_FilesSource):
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
        self.decoded.forget_before(start)
        for path, spans in self._channels().items():
            wanted = spans is None or any(
                t0 <= end and t1 >= start and any(matches(k, *nslc) for k in stations)
                for (*nslc, t0, t1) in spans
            )
            if wanted:
                out += select(self.decoded.get(path, start, end), stations)
        self._report_missing(stations, out, start, end)
        return out
