"""A SeedLink v3 server that streams an archive in (accelerated) real time: ``eqt-monitor simulate``.

The archive is cut into fixed chunks on a grid anchored at the start time, every chunk's traces
are packed into 512-byte miniSEED records, and the records are released in order of their end
time once the simulated clock (``start + wall_elapsed * speed``) reaches it. Each released record
gets the next global sequence number, so a server restarted with the same archive, start time
and chunk length numbers every record the same way, and a client resuming from sequence N gets
exactly the records after N.

Protocol facts (SeedLink v3, as ObsPy's ``SeedLinkConnection`` and libslink speak it): commands
are ASCII lines ended by CR (optional LF); modifier commands answer ``OK``/``ERROR`` + CRLF;
data packets are ``SL`` + 6 upper-case hex digits (sequence mod 2**24) + a 512-byte record;
INFO answers are ``SLINFO *`` (more follow) / ``SLINFO  `` (last) + a 512-byte ASCII log
record holding XML; dial-up mode (FETCH) and finished time windows end with ``END``.
"""
from __future__ import annotations

import fnmatch
import glob
import io
import logging
import os
import re
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from xml.sax.saxutils import quoteattr

import numpy as np
from obspy import Trace, UTCDateTime, read

from eqt_monitor.errors import UserError
from eqt_monitor.records import StationKey
from eqt_monitor.sources import open_source
from eqt_monitor.sources.archive import SDSSource

log = logging.getLogger(__name__)

RECORD_LENGTH = 512
SEQUENCE_MODULUS = 1 << 24
SOFTWARE = "SeedLink v3.1 (eqt-monitor simulate)"
HELLO_CAPABILITIES = "SLPROTO:3.1 NSWILDCARD BATCH"
INFO_LEVELS = ("ID", "CAPABILITIES", "STATIONS", "STREAMS", "GAPS", "CONNECTIONS", "ALL")
RECORD_TYPES = "DECOTL"


# --------------------------------------------------------------------------- records


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


# --------------------------------------------------------------------------- archives


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


class _Archive:
    """An archive (``sds://`` or ``file://``) read through ``open_source``, plus what it holds and when."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        if not uri.lower().startswith(("sds://", "file://")):
            raise UserError(f"simulate: --source {uri!r}: only sds:// and file:// archives can be simulated")
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


def archive_records(archive: _Archive, start: float, end: float, chunk: float) -> Iterator[tuple[float, list[Record]]]:
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


# --------------------------------------------------------------------------- the released-record log


class SimClock:
    """Simulated time: ``start + (wall seconds since creation) * speed``."""

    def __init__(self, start: float, speed: float) -> None:
        if speed <= 0:
            raise UserError(f"simulate: --speed must be positive, got {speed}")
        self.start, self.speed, self._t0 = start, speed, time.monotonic()

    def now(self) -> float:
        """The simulated now, POSIX seconds."""
        return self.start + (time.monotonic() - self._t0) * self.speed

    def wall_until(self, t: float) -> float:
        """Wall seconds until the simulated clock reaches ``t`` (≤ 0 when it already has)."""
        return (t - self.now()) / self.speed


class RecordLog:
    """Released records with their global (unwrapped) sequence numbers; bounded; thread-safe."""

    def __init__(self, capacity: int) -> None:
        self._records: deque[Record] = deque(maxlen=capacity)
        self.first_index = 0  # sequence of self._records[0]
        self.next_index = 0  # sequence the next released record gets
        self.released_through = float("-inf")  # every record starting before this is released
        self.finished = False
        self.cond = threading.Condition()

    def extend(self, records: list[Record]) -> None:
        """Release records (in order)."""
        with self.cond:
            for rec in records:
                if len(self._records) == self._records.maxlen:
                    self.first_index += 1
                self._records.append(rec)
                self.next_index += 1
            self.cond.notify_all()

    def mark(self, released_through: float, finished: bool = False) -> None:
        """Record progress: all records starting before ``released_through`` are out."""
        with self.cond:
            self.released_through, self.finished = released_through, finished
            self.cond.notify_all()

    def read(self, index: int, limit: int) -> list[tuple[int, Record]]:
        """Up to ``limit`` released records from sequence ``index`` on (from the oldest kept if evicted)."""
        with self.cond:
            index = max(index, self.first_index)
            stop = min(self.next_index, index + limit)
            return [(i, self._records[i - self.first_index]) for i in range(index, stop)]

    def wait(self, index: int, timeout: float) -> None:
        """Block until a record with sequence ≥ ``index`` is released, or ``timeout`` passes."""
        with self.cond:
            if self.next_index <= index:
                self.cond.wait(timeout)

    def resolve(self, seq24: int) -> int:
        """The unwrapped sequence nearest the newest one whose low 24 bits are ``seq24``."""
        with self.cond:
            nxt = self.next_index
        half = SEQUENCE_MODULUS // 2
        return max(0, nxt + ((seq24 - nxt + half) % SEQUENCE_MODULUS) - half)


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selector:
    """A SeedLink v3 stream selector ``[!][LL]CCC[.T]`` with ``?`` wildcards and ``-`` for space."""

    negative: bool
    location: str | None
    channel: str | None
    rtype: str | None

    @classmethod
    def parse(cls, text: str) -> "Selector":
        """Parse a SELECT pattern; raises ``ValueError`` on a malformed one."""
        negative = text.startswith("!")
        body, rtype = (text[1:] if negative else text), None
        if "." in body:
            body, rtype = body.rsplit(".", 1)
            if len(rtype) != 1 or rtype.upper() not in RECORD_TYPES + "?":
                raise ValueError(f"bad record type in selector {text!r}")
            rtype = rtype.upper()
        body = body.upper().replace("-", " ")
        if len(body) == 5:
            return cls(negative, body[:2], body[2:], rtype)
        if len(body) == 3:
            return cls(negative, None, body, rtype)
        if not body and rtype:
            return cls(negative, None, None, rtype)
        raise ValueError(f"selector {text!r} is not [LL]CCC[.T]")

    def matches(self, rec: Record, rtype: str = "D") -> bool:
        """Whether a data record of this location and channel matches."""
        return (_wild(self.location, rec.location.ljust(2)) and _wild(self.channel, rec.channel)
                and _wild(self.rtype, rtype))


def _wild(pattern: str | None, value: str) -> bool:
    if pattern is None:
        return True
    return len(pattern) == len(value) and all(p in ("?", v) for p, v in zip(pattern, value))


@dataclass
class _Subscription:
    """What one STATION (or uni-station) request asked for."""

    network: str = "*"
    station: str = "*"
    selectors: list[Selector] = field(default_factory=list)
    seq: int | None = None
    begin: float | None = None
    end: float | None = None
    start_index: int = 0

    def matches(self, rec: Record) -> bool:
        if not (fnmatch.fnmatchcase(rec.network, self.network) and fnmatch.fnmatchcase(rec.station, self.station)):
            return False
        if self.begin is not None and rec.end <= self.begin:
            return False
        if self.end is not None and rec.start > self.end:
            return False
        positive = [s for s in self.selectors if not s.negative]
        if positive and not any(s.matches(rec) for s in positive):
            return False
        return not any(s.matches(rec) for s in self.selectors if s.negative)


def _parse_time(text: str) -> float:
    """SeedLink time ``YYYY,MM,DD,hh,mm,ss[,ffffff]`` → POSIX seconds."""
    parts = [int(p) for p in text.split(",")]
    if len(parts) < 6:
        raise ValueError(f"bad SeedLink time {text!r}")
    return UTCDateTime(*parts[:6]).timestamp + (parts[6] / 1e6 if len(parts) > 6 else 0.0)


def _seedlink_time(t: float) -> str:
    return UTCDateTime(t).strftime("%Y/%m/%d %H:%M:%S.%f")[:-2]


# --------------------------------------------------------------------------- server


class SeedLinkServer:
    """A threaded SeedLink v3 server over an archive; ``start()`` binds and returns at once."""

    def __init__(self, uri: str, *, host: str = "127.0.0.1", port: int = 18000, speed: float = 1.0,
                 start: float | None = None, end: float | None = None, buffer_records: int = 100_000,
                 chunk_seconds: float = 600.0) -> None:
        self.archive = _Archive(uri)
        self.start_time = self.archive.span[0] if start is None else float(start)
        self.end_time = self.archive.span[1] if end is None else min(float(end), self.archive.span[1])
        if self.end_time <= self.start_time:
            raise UserError(f"simulate: nothing to stream: --start {UTCDateTime(self.start_time)} is not before "
                            f"the end of the data ({UTCDateTime(self.end_time)})")
        self.host, self.port, self.speed, self.chunk = host, port, speed, chunk_seconds
        self.log = RecordLog(buffer_records)
        self.started = time.time()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sessions: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def stations(self) -> list[tuple[str, str]]:
        """``(network, station)`` pairs the archive holds."""
        return sorted({(n, s) for n, s, _, _ in self.archive.channels})

    def start(self) -> "SeedLinkServer":
        """Bind (``port=0`` picks a free one, see ``self.port``) and start the clock and threads."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise UserError(f"simulate: cannot listen on {self.host}:{self.port}: {exc.strerror}") from exc
        sock.listen(64)
        sock.settimeout(0.2)
        self._sock, self.port = sock, sock.getsockname()[1]
        self.clock = SimClock(self.start_time, self.speed)
        for target in (self._produce, self._accept):
            t = threading.Thread(target=target, name=f"seedlink-{target.__name__.strip('_')}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        """Close the listening socket and every client connection, and stop the clock."""
        self._stop.set()
        with self._lock:
            for s in list(self._sessions):
                _shutdown(s)
        for t in self._threads:
            t.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> "SeedLinkServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until ``stop()`` is called from another thread or a signal handler."""
        while not self._stop.wait(0.5):
            pass

    # producer: release records as the simulated clock passes their end time
    def _produce(self) -> None:
        for chunk_end, records in archive_records(self.archive, self.start_time, self.end_time, self.chunk):
            i = 0
            while i < len(records):
                if self._stop.wait(max(0.0, min(self.clock.wall_until(records[i].end), 0.5))):
                    return
                now = self.clock.now()
                j = i
                while j < len(records) and records[j].end <= now:
                    j += 1
                self.log.extend(records[i:j])
                i = j
            if self._stop.wait(max(0.0, min(self.clock.wall_until(chunk_end), 0.5))):
                return
            self.log.mark(chunk_end)
        self.log.mark(float("inf"), finished=True)
        log.info("simulate: all data up to %s released (%d records)", UTCDateTime(self.end_time), self.log.next_index)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._sessions.add(conn)
            threading.Thread(target=self._serve, args=(conn, addr), name=f"seedlink-client-{addr[1]}",
                             daemon=True).start()

    def _serve(self, conn: socket.socket, addr: tuple) -> None:
        try:
            _Session(self, conn).run()
        except OSError as exc:
            log.info("simulate: client %s:%s gone: %s", addr[0], addr[1], exc)
        except Exception:
            log.exception("simulate: client %s:%s failed", addr[0], addr[1])
        finally:
            with self._lock:
                self._sessions.discard(conn)
            _shutdown(conn)
            conn.close()

    # INFO documents
    def info_xml(self, level: str) -> str:
        """The XML answer to ``INFO level`` (``level`` upper-case, one of ``INFO_LEVELS``)."""
        head = (f'<?xml version="1.0"?>\n<seedlink software={quoteattr(SOFTWARE)} organization="eqt-monitor" '
                f'started="{_seedlink_time(self.started)}"')
        if level in ("ID", "GAPS", "CONNECTIONS"):
            return head + "/>\n"
        if level == "CAPABILITIES":
            caps = ("dialup", "multistation", "window-extraction", "info:id", "info:capabilities",
                    "info:stations", "info:streams")
            return head + ">\n" + "".join(f'<capability name="{c}"/>\n' for c in caps) + "</seedlink>\n"
        with self.log.cond:
            first, nxt = self.log.first_index, self.log.next_index
        body = []
        for net, sta in self.stations:
            attrs = (f'name={quoteattr(sta)} network={quoteattr(net)} description="archive {net}.{sta}" '
                     f'begin_seq="{first % SEQUENCE_MODULUS:06X}" end_seq="{nxt % SEQUENCE_MODULUS:06X}" '
                     f'stream_check="enabled"')
            if level == "STATIONS":
                body.append(f"<station {attrs}/>\n")
                continue
            streams = "".join(
                f'<stream location={quoteattr(loc)} seedname={quoteattr(cha)} type="D" '
                f'begin_time="{_seedlink_time(self.start_time)}" end_time="{_seedlink_time(self.end_time)}" '
                f'begin_recno="0" end_recno="0" gap_check="disabled" gap_treshold="0"/>\n'
                for n, s, loc, cha in self.archive.channels if (n, s) == (net, sta))
            body.append(f"<station {attrs}>\n{streams}</station>\n")
        return head + ">\n" + "".join(body) + "</seedlink>\n"


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def info_packets(xml: str) -> bytes:
    """``SLINFO`` packets carrying ``xml`` in 512-byte ASCII log records (all but the last marked ``*``)."""
    trace = Trace(np.frombuffer(xml.encode("ascii", "replace"), dtype="S1"),
                  header={"network": "SL", "station": "INFO", "channel": "LOG", "sampling_rate": 0.0})
    buf = io.BytesIO()
    trace.write(buf, format="MSEED", reclen=RECORD_LENGTH, encoding="ASCII", byteorder=">")
    raw = buf.getvalue()
    chunks = [raw[i:i + RECORD_LENGTH] for i in range(0, len(raw), RECORD_LENGTH)]
    return b"".join((b"SLINFO *" if i < len(chunks) - 1 else b"SLINFO  ") + c for i, c in enumerate(chunks))


class _Session:
    """One client connection: handshake, then streaming (real-time or dial-up)."""

    def __init__(self, server: SeedLinkServer, conn: socket.socket) -> None:
        self.server, self.conn = server, conn
        self.buf = b""
        self.batch = False
        self.multistation = False
        self.subs: list[_Subscription] = []
        self.uni = _Subscription()
        self.dialup = False
        conn.settimeout(30.0)

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def reply(self, ok: bool) -> None:
        if not ok or not self.batch:
            self.send(b"OK\r\n" if ok else b"ERROR\r\n")

    def lines(self, block: bool) -> Iterator[str]:
        """Command lines from the client: forever if ``block``, else only those already sent."""
        while True:
            m = re.search(rb"[\r\n]", self.buf)
            if m:
                line, self.buf = self.buf[:m.start()], self.buf[m.end():]
                if line.strip():
                    yield line.decode("ascii", "replace").strip()
                continue
            if not block and not select.select([self.conn], [], [], 0)[0]:
                return
            if self.server._stop.is_set():
                raise ConnectionAbortedError("server stopping")
            try:
                data = self.conn.recv(4096)
            except socket.timeout:
                continue
            if not data:
                raise ConnectionResetError("client closed the connection")
            self.buf += data

    def run(self) -> None:
        for line in self.lines(block=True):
            words = line.split()
            cmd, args = words[0].upper(), words[1:]
            if cmd == "BYE":
                return
            if cmd in ("DATA", "FETCH", "TIME"):
                ok = self.action(cmd, args)
                if not self.multistation:
                    if ok:
                        return self.stream()
                    self.send(b"ERROR\r\n")
                    continue
                self.reply(ok)
            elif cmd == "END":
                if self.multistation and self.subs:
                    return self.stream()
                self.send(b"ERROR\r\n")
            else:
                self.modifier(cmd, args)

    def modifier(self, cmd: str, args: list[str]) -> None:
        if cmd == "HELLO":
            self.send(f"{SOFTWARE} :: {HELLO_CAPABILITIES}\r\neqt-monitor archive simulator\r\n".encode())
        elif cmd == "BATCH":
            self.reply(True)
            self.batch = True
        elif cmd == "CAT":
            self.send("".join(f"{n} {s}\r\n" for n, s in self.server.stations).encode() + b"END\r\n")
        elif cmd == "INFO":
            self.info(args)
        elif cmd == "STATION" and 1 <= len(args) <= 2:
            sta, net = args[0], (args[1] if len(args) > 1 else "*")
            known = any(fnmatch.fnmatchcase(n, net) and fnmatch.fnmatchcase(s, sta) for n, s in self.server.stations)
            if known:
                self.multistation = True
                self.subs.append(_Subscription(network=net, station=sta))
            self.reply(known)
        elif cmd == "SELECT" and len(args) <= 1:
            sub = self.subs[-1] if self.multistation else self.uni
            if not args:
                sub.selectors.clear()
                return self.reply(True)
            try:
                sub.selectors.append(Selector.parse(args[0]))
            except ValueError as exc:
                log.info("simulate: %s", exc)
                return self.reply(False)
            self.reply(True)
        else:
            self.send(b"ERROR\r\n")

    def action(self, cmd: str, args: list[str]) -> bool:
        """Apply DATA/FETCH/TIME to the current station; False when the arguments are bad."""
        sub = self.subs[-1] if self.multistation else self.uni
        try:
            if cmd == "TIME":
                times, seq = args, None
            else:
                seq = None if not args or args[0] == "-1" else int(args[0], 16) % SEQUENCE_MODULUS
                times = args[1:]
            if len(times) > 2 or (cmd == "TIME" and not times):
                return False
            sub.seq = seq
            sub.begin = _parse_time(times[0]) if times else None
            sub.end = _parse_time(times[1]) if len(times) > 1 else None
        except ValueError:
            return False
        self.dialup = cmd == "FETCH"
        return True

    def info(self, args: list[str]) -> None:
        level = args[0].upper() if len(args) == 1 else ""
        if level not in INFO_LEVELS:
            return self.send(b"ERROR\r\n")
        self.send(info_packets(self.server.info_xml("STREAMS" if level == "ALL" else level)))

    def stream(self) -> None:
        """Send matching records from each subscription's start until the client leaves."""
        subs = self.subs if self.multistation else [self.uni]
        rlog = self.server.log
        for sub in subs:
            if sub.seq is not None:
                sub.start_index = rlog.resolve(sub.seq)
            elif sub.begin is not None:
                sub.start_index = rlog.first_index
            else:
                sub.start_index = rlog.next_index
        cursor = min(sub.start_index for sub in subs)
        if cursor < rlog.first_index:
            log.warning("simulate: client asked for sequence %06X, older than the buffer; starting at the oldest",
                        cursor % SEQUENCE_MODULUS)
        window_end = max(sub.end for sub in subs) if all(sub.end is not None for sub in subs) else None
        while not self.server._stop.is_set():
            batch = rlog.read(cursor, 256)
            if batch:
                packets = [b"SL%06X" % (i % SEQUENCE_MODULUS) + rec.data for i, rec in batch
                           if any(i >= s.start_index and s.matches(rec) for s in subs)]
                if packets:
                    self.send(b"".join(packets))
                cursor = batch[-1][0] + 1
            elif self.dialup or (window_end is not None and rlog.released_through > window_end):
                self.send(b"END")
                self.drain()
                return
            else:
                rlog.wait(cursor, 0.25)
            for line in self.lines(block=False):
                words = line.split()
                if words[0].upper() == "BYE":
                    return
                if words[0].upper() == "INFO":
                    self.info(words[1:])

    def drain(self) -> None:
        """After END, wait (bounded) for the client to close the connection."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.server._stop.is_set():
            try:
                for _ in self.lines(block=True):
                    pass
            except (ConnectionError, OSError):
                return
