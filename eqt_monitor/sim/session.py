"""One client connection of the simulator: the handshake (modifier and action commands), then
streaming records from the released-record log, real-time or dial-up."""
from __future__ import annotations

import fnmatch
import logging
import re
import select
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from eqt_monitor.sim.protocol import (HELLO_CAPABILITIES, INFO_LEVELS, SEQUENCE_MODULUS, SOFTWARE, Selector,
                                      Subscription, info_packets, parse_time)

if TYPE_CHECKING:
    from eqt_monitor.sim.server import SeedLinkServer

log = logging.getLogger(__name__)


class Session:
    """One client connection: handshake, then streaming (real-time or dial-up)."""

    def __init__(self, server: SeedLinkServer, conn: socket.socket) -> None:
        self.server, self.conn = server, conn
        self.buf = b""
        self.batch = False
        self.multistation = False
        self.subs: list[Subscription] = []
        self.uni = Subscription()
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
            if self.server.stopping.is_set():
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
                self.subs.append(Subscription(network=net, station=sta))
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
            sub.begin = parse_time(times[0]) if times else None
            sub.end = parse_time(times[1]) if len(times) > 1 else None
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
        while not self.server.stopping.is_set():
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
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            try:
                for _ in self.lines(block=True):
                    pass
            except (ConnectionError, OSError):
                return
