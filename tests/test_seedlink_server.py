"""The SeedLink v3 simulator over real TCP on 127.0.0.1, with ObsPy's client as the peer and the
chile_2014 SDS archive (real 100 Hz Steim-2 data) as the stream."""
from __future__ import annotations

import argparse
import io
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import obspy
import pytest
from obspy.clients.seedlink.client.seedlinkconnection import SeedLinkConnection
from obspy.clients.seedlink.slpacket import SLPacket

from conftest import CHILE_CHANNELS as CHANNELS, CHILE_T0
from eqt_monitor.commands import simulate
from eqt_monitor.errors import UserError
from eqt_monitor.sim.protocol import Selector
from eqt_monitor.sim.server import RecordLog, SeedLinkServer

T0 = obspy.UTCDateTime(CHILE_T0)


def archive_samples(archive: dict, cid: str, start: obspy.UTCDateTime, end: obspy.UTCDateTime) -> np.ndarray:
    """Archive samples of ``cid`` with start <= t <= end."""
    return archive[cid].slice(start, end, nearest_sample=False).data


def collect(conn: SeedLinkConnection, limit_s: float = 60) -> list[SLPacket]:
    packets, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        p = conn.collect()
        if not isinstance(p, SLPacket):
            return packets
        packets.append(p)
    raise AssertionError("the server never ended the time window")


class Raw:
    """A bare SeedLink client on a socket, for what ObsPy's client does not expose."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out

    def cmd(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def packets_until_end(self) -> list[tuple[int, bytes]]:
        """``(sequence, record)`` until the server's ``END``."""
        out = []
        while True:
            head = self.read(3)
            if head == b"END":
                return out
            head += self.read(5)
            assert head[:2] == b"SL", head
            out.append((int(head[2:], 16), self.read(512)))

    def close(self) -> None:
        self.sock.close()


def fetch_all(port: int, seq: int | None = None, selector: str = "HH?.D") -> list[tuple[int, bytes]]:
    """Dial-up (FETCH) for both stations: every released record (after ``seq``), then END."""
    c = Raw(port)
    try:
        for sta in ("PB01", "PB02"):
            assert c.cmd(f"STATION {sta} CX") == b"OK"
            assert c.cmd(f"SELECT {selector}") == b"OK"
            assert c.cmd("FETCH" + (f" {seq + 1:06X}" if seq is not None else " 000000")) == b"OK"
        c.sock.sendall(b"END\r\n")
        return c.packets_until_end()
    finally:
        c.close()


def wait_released(server: SeedLinkServer, through: float, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while server.log.released_through < through:
        assert time.monotonic() < deadline, "records were not released in time"
        time.sleep(0.05)


@pytest.fixture
def server(sds: Path):
    with SeedLinkServer(f"sds://{sds}", port=0, speed=600, start=T0.timestamp, end=(T0 + 900).timestamp) as srv:
        yield srv


def test_obspy_client_gets_the_archive_samples_for_several_stations(server, archive):
    begin, end = T0 + 30, T0 + 150
    conn = SeedLinkConnection(timeout=60)
    conn.set_sl_address(f"127.0.0.1:{server.port}")
    conn.add_stream("CX", "PB01", "HH?.D", -1, None)
    conn.add_stream("CX", "PB02", "HH?.D", -1, None)
    conn.set_begin_time(begin.format_seedlink())
    conn.set_end_time(end.format_seedlink())
    packets = collect(conn)
    seqs = [p.get_sequence_number() for p in packets]
    assert seqs == sorted(set(seqs)), "sequence numbers must increase"
    assert all(len(p.msrecord) == 512 for p in packets)
    got = obspy.Stream([p.get_trace() for p in packets])
    assert sorted({tr.id for tr in got}) == CHANNELS
    got.merge()  # raises on conflicting overlaps; one trace per channel means no gap
    assert len(got) == len(CHANNELS)
    for tr in got:
        assert tr.stats.starttime <= begin and tr.stats.endtime >= end  # the whole window, whole records
        expected = archive_samples(archive, tr.id, tr.stats.starttime, tr.stats.endtime)
        assert tr.data.dtype == np.int32 and np.array_equal(tr.data, expected), tr.id


def test_handshake_selectors_and_info_on_a_raw_socket(server):
    c = Raw(server.port)
    try:
        c.sock.sendall(b"HELLO\r\n")
        assert c.line().startswith(b"SeedLink v3.1 ")
        assert c.line()  # station / data-centre description
        assert c.cmd("STATION NOPE CX") == b"ERROR"
        assert c.cmd("STATION PB0? CX") == b"OK"  # NSWILDCARD
        assert c.cmd("SELECT HHHH") == b"ERROR"
        assert c.cmd("SELECT HHZ.X") == b"ERROR"
        assert c.cmd("SELECT --HHZ.D") == b"OK"
        assert c.cmd("DATA") == b"OK"
        assert c.cmd("NOSUCHCOMMAND") == b"ERROR"
        c.sock.sendall(b"INFO ID\r\n")
        head = c.read(8)
        assert head == b"SLINFO  "  # one, final, INFO packet
        info = obspy.read(io.BytesIO(c.read(512)))[0]
        root = ET.fromstring(info.data.tobytes().decode())
        assert root.tag == "seedlink" and root.get("software").startswith("SeedLink v3.1")
        c.sock.sendall(b"INFO STREAMS\r\n")
        xml = b""
        while True:
            head = c.read(8)
            assert head[:6] == b"SLINFO"
            xml += obspy.read(io.BytesIO(c.read(512)))[0].data.tobytes()
            if head[6:] == b"  ":
                break
        streams = ET.fromstring(xml.decode())
        names = {(s.get("network"), s.get("name")) for s in streams.iter("station")}
        assert names == {("CX", "PB01"), ("CX", "PB02")}
        assert len(list(streams.iter("stream"))) == 6
        c.sock.sendall(b"END\r\n")  # real-time data for PB01 and PB02 HHZ only, as the clock releases it
        seen = set()
        while len(seen) < 2:
            head = c.read(8)
            assert head[:2] == b"SL" and int(head[2:], 16) >= 0
            tr = obspy.read(io.BytesIO(c.read(512)))[0]
            assert tr.stats.channel == "HHZ"
            seen.add(tr.stats.station)
        c.sock.sendall(b"BYE\r\n")
        c.sock.settimeout(10)
        while c.sock.recv(65536):  # the server closes the connection
            pass
    finally:
        c.close()


def test_resume_from_a_sequence_number_gives_exactly_the_records_after_it(server):
    wait_released(server, float("inf"))  # the whole span: no record is released between the two fetches
    everything = fetch_all(server.port)
    seqs = [s for s, _ in everything]
    assert len(seqs) > 100 and seqs == sorted(seqs)
    k = len(everything) // 3
    resumed = fetch_all(server.port, seq=seqs[k])
    assert resumed == everything[k + 1:]
    assert resumed[0][0] > seqs[k]


def test_restarted_server_numbers_and_packs_records_identically(sds, server):
    wait_released(server, (T0 + 600).timestamp)
    first = fetch_all(server.port)
    port = server.port
    server.stop()
    with SeedLinkServer(f"sds://{sds}", port=port, speed=600, start=T0.timestamp, end=(T0 + 900).timestamp) as again:
        wait_released(again, (T0 + 600).timestamp)
        second = fetch_all(again.port)
    n = min(len(first), len(second))
    assert n > 100 and first[:n] == second[:n]


def test_sequence_numbers_wrap_to_the_newest_matching_24_bits():
    log = RecordLog(capacity=10)
    log.next_index = (1 << 24) + 5
    assert log.resolve(3) == (1 << 24) + 3
    assert log.resolve(0xFFFFFF) == (1 << 24) - 1
    assert log.resolve(7) == (1 << 24) + 7  # not released yet: the client waits for it
    log.next_index = 5
    assert log.resolve(0xFFFFFE) == 0  # before the first record: start at the beginning


def test_selectors_follow_the_protocol_syntax():
    rec = type("R", (), {"location": "", "channel": "HHZ"})()
    rec00 = type("R", (), {"location": "00", "channel": "HHZ"})()
    assert Selector.parse("HH?").matches(rec) and Selector.parse("HH?").matches(rec00)
    assert Selector.parse("--HHZ.D").matches(rec) and not Selector.parse("--HHZ").matches(rec00)
    assert Selector.parse("00HH?.D").matches(rec00) and not Selector.parse("00HH?").matches(rec)
    assert not Selector.parse("HHZ.L").matches(rec)  # a data record is not a log record
    assert Selector.parse("!HHZ").negative
    for bad in ("HHHH", "H", "HHZ.DD", "HHZ.X"):
        with pytest.raises(ValueError):
            Selector.parse(bad)


def test_simulate_refuses_bad_sources_with_one_line_naming_them(tmp_path):
    parser = argparse.ArgumentParser()
    simulate.add_arguments(parser)
    for uri, named in ((f"sds://{tmp_path}/nope", "nope"), (f"file://{tmp_path}/*.mseed", "*.mseed"),
                       ("fdsn://127.0.0.1:1", "fdsn://")):
        with pytest.raises(UserError) as err:
            simulate.run(parser.parse_args(["--source", uri, "--port", "0"]))
        assert named in str(err.value) and "\n" not in str(err.value)
