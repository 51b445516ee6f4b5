"""The simulator's server: ``eqt-monitor simulate`` streams an archive over SeedLink v3 in
(accelerated) real time.

Records (``sim.archive``) are released in order of their end time once the simulated clock
(``start + wall_elapsed * speed``) reaches it. Each released record gets the next global
sequence number, so a server restarted with the same archive, start time and chunk length
numbers every record the same way, and a client resuming from sequence N gets exactly the
records after N. Each client connection is a ``sim.session.Session``.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque

from obspy import UTCDateTime

from eqt_monitor.errors import UserError
from eqt_monitor.sim.archive import Archive, Record, archive_records
from eqt_monitor.sim.protocol import SEQUENCE_MODULUS, info_xml
from eqt_monitor.sim.session import Session

log = logging.getLogger(__name__)


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


class SeedLinkServer:
    """A threaded SeedLink v3 server over an archive; ``start()`` binds and returns at once."""

    def __init__(self, uri: str, *, host: str = "127.0.0.1", port: int = 18000, speed: float = 1.0,
                 start: float | None = None, end: float | None = None, buffer_records: int = 100_000,
                 chunk_seconds: float = 600.0) -> None:
        self.archive = Archive(uri)
        self.start_time = self.archive.span[0] if start is None else float(start)
        self.end_time = self.archive.span[1] if end is None else min(float(end), self.archive.span[1])
        if self.end_time <= self.start_time:
            raise UserError(f"simulate: nothing to stream: --start {UTCDateTime(self.start_time)} is not before "
                            f"the end of the data ({UTCDateTime(self.end_time)})")
        self.host, self.port, self.speed, self.chunk = host, port, speed, chunk_seconds
        self.log = RecordLog(buffer_records)
        self.started = time.time()
        self.stopping = threading.Event()  # set by stop(); the threads and sessions end when they see it
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
        self.stopping.set()
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
        while not self.stopping.wait(0.5):
            pass

    # producer: release records as the simulated clock passes their end time
    def _produce(self) -> None:
        for chunk_end, records in archive_records(self.archive, self.start_time, self.end_time, self.chunk):
            i = 0
            while i < len(records):
                if self.stopping.wait(max(0.0, min(self.clock.wall_until(records[i].end), 0.5))):
                    return
                now = self.clock.now()
                j = i
                while j < len(records) and records[j].end <= now:
                    j += 1
                self.log.extend(records[i:j])
                i = j
            if self.stopping.wait(max(0.0, min(self.clock.wall_until(chunk_end), 0.5))):
                return
            self.log.mark(chunk_end)
        self.log.mark(float("inf"), finished=True)
        log.info("simulate: all data up to %s released (%d records)", UTCDateTime(self.end_time), self.log.next_index)

    def _accept(self) -> None:
        while not self.stopping.is_set():
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
            Session(self, conn).run()
        except OSError as exc:
            log.info("simulate: client %s:%s gone: %s", addr[0], addr[1], exc)
        except Exception:
            log.exception("simulate: client %s:%s failed", addr[0], addr[1])
        finally:
            with self._lock:
                self._sessions.discard(conn)
            _shutdown(conn)
            conn.close()

    def info_xml(self, level: str) -> str:
        """The XML answer to ``INFO level`` (``level`` upper-case, one of ``INFO_LEVELS``)."""
        with self.log.cond:
            first, nxt = self.log.first_index, self.log.next_index
        return info_xml(level, started=self.started, channels=self.archive.channels, first_seq=first, next_seq=nxt,
                        begin=self.start_time, end=self.end_time)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
