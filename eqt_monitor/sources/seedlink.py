"""A SeedLink v3 client on ObsPy's ``SeedLinkConnection``, resumable across restarts.

One connection in multi-station mode carries every configured station: for each ``NET STA`` a
``STATION`` command with selectors ``[LL]CCC.D`` built from the stations' location and channel
prefix (``HH`` → ``HH?``; no prefix → ``???``). A thread collects 512-byte records and hands each
one on as an ObsPy ``Trace`` to a callback. ``LiveSeedLink`` is the ``LiveSource`` the daemon runs.

Resuming: per ``NET.STA`` the sequence number of the last record handed on (or, with
``autosave=False``, of the last record the caller committed with ``save_state(until=...)``) is
written atomically to a JSON state file (``seedlink_state``); a restart asks the server for the records after it
(``DATA seq+1``), so nothing is skipped and nothing handed on twice. Network trouble is handled
in-process: a read timeout (``net_timeout`` without data), keep-alives (``INFO ID``), and
reconnects with capped exponential backoff that resume from the last record received.

Sequence resets: after each (re)connect the first record of every station resumed by sequence
number must continue ours (number ahead of ours, start no later than our last sample). If not,
the server's numbering was reset (a restart, a wiped ring buffer): that record is dropped and the
stations not yet confirmed are asked again by time (``TIME`` from their last sample), as
SeisComP's clients do. Data the server no longer has is a warning naming the station and span,
and ``Recorder.data_lost`` (the daemon's ``eqt_monitor_data_lost_seconds``).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import obspy
from obspy.clients.seedlink.client.seedlinkconnection import SeedLinkConnection
from obspy.clients.seedlink.seedlinkexception import SeedLinkException
from obspy.clients.seedlink.slpacket import SLPacket

from eqt_monitor.records import NullRecorder, Recorder, StationKey
from eqt_monitor.sources.base import LiveOptions, Put, Source, SourceError, StationLookup, select
from eqt_monitor.sources.seedlink_state import SeedLinkState

log = logging.getLogger(__name__)

DEFAULT_PORT = 18000
POLL_S = 0.1  # socket read timeout while streaming: how often the loop looks at timers and stop requests
SEQUENCE_MODULUS = 1 << 24  # SeedLink sequence numbers are 24 bits
CONTINUITY_TOLERANCE_S = 1.0  # a resumed record continues ours when it starts this close to its channel's last end


def selectors(keys: Sequence[StationKey]) -> dict[tuple[str, str], str]:
    """``(network, station)`` → space-separated SeedLink selectors for those stations' streams.

    The location goes in front when it is set (``00HH?.D``); an empty location selects any
    location (``HH?.D``: ``--`` for "empty" is not understood by every server) and the records
    of other locations are dropped on arrival.
    """
    out: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        sel = f"{key.location}{key.channel_prefix[:3].ljust(3, '?')}.D"
        lst = out.setdefault((key.network, key.station), [])
        if sel not in lst:
            lst.append(sel)
    return {ns: " ".join(sels) for ns, sels in out.items()}


@dataclass
class SourceCounters:
    """What a source has seen since it was created (also reported to its ``Recorder``)."""

    records: int = 0
    samples: int = 0
    reconnects: int = 0
    errors: Counter = field(default_factory=Counter)


def _address(uri: str) -> str:
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep:
        host, port = rest.rstrip("/"), str(DEFAULT_PORT)
    if not host or not port.isdigit():
        raise SourceError(f"source {uri!r}: expected seedlink://HOST[:PORT]")
    return f"{host}:{port}"


class _Connection(SeedLinkConnection):
    """ObsPy's connection with our reconnect policy: backoff before each reconnect, short read
    timeouts (so keep-alives, the network timeout and stop requests are seen), and EOF taken as
    a lost connection instead of "no data yet"."""

    def __init__(self, owner: "SeedLinkSource") -> None:
        super().__init__()
        self.owner = owner

    def connect(self) -> None:
        owner = self.owner
        delay = owner._backoff_delay()
        if owner._stopping.is_set() or (delay and owner._stopping.wait(delay)):
            raise SeedLinkException("stop requested")
        owner._attempts += 1
        self.timeout = owner.connect_timeout  # ObsPy uses it for the connect; collect() must not see it
        try:
            super().connect()
        except (SeedLinkException, OSError) as exc:
            owner._count_error("connect", f"cannot connect to {self.sladdr}: {exc}")
            raise SeedLinkException(str(exc)) from exc
        finally:
            self.timeout = None
        if owner._connected_once:
            owner._count_reconnect()
        owner._connected_once = True
        owner._connected()
        self.socket.settimeout(POLL_S)

    def negotiate_station(self, curstream) -> None:
        """ObsPy's negotiation; a station whose resume point is a time (after a sequence reset)
        is asked for with ``TIME`` from there instead of its sequence number."""
        sta = f"{curstream.net}.{curstream.station}"
        begin = self.owner._by_time.get(sta)
        if begin is None:
            return super().negotiate_station(curstream)
        saved = self.begin_time, curstream.seqnum
        self.begin_time, curstream.seqnum = obspy.UTCDateTime(begin), -1
        try:
            super().negotiate_station(curstream)
        finally:
            self.begin_time, curstream.seqnum = saved
        self.owner._asked_by_time.add(sta)

    def update_stream(self, slpacket: SLPacket) -> None:
        """ObsPy's bookkeeping of a received packet; one it cannot decode is dropped there (with its
        own log line) before we see it, so count it here."""
        try:
            super().update_stream(slpacket)
        except SeedLinkException as exc:
            self.owner._count_error("decode", f"undecodable record dropped: {' '.join(str(exc).split())}")
            raise

    def receive_data(self, maxbytes: int, code: str) -> bytes:
        try:
            data = self.socket.recv(maxbytes)
        except socket.timeout:
            return b""
        if not data:
            raise ConnectionResetError(f"{code}: connection closed by the server")
        return data


class SeedLinkSource(Source):
    """A SeedLink server: ``start`` runs a collector thread, ``stop`` ends it; ``get_waveforms`` for spans.

    ``state_file``: JSON with the resume point per ``NET.STA``. ``begin``: start time (POSIX s)
    for stations without a resume point (``TIME`` request); ``None`` asks for new data only.
    ``keepalive`` and ``net_timeout`` in seconds (0 disables); reconnects wait
    ``backoff_initial * 2**(n-1)`` seconds, at most ``backoff_max``. ``autosave``: write the state
    after every record handed on; otherwise the caller commits with ``save_state(until=...)``.
    ``recorder``: where errors, reconnects, records and lost data are reported.
    """

    def __init__(self, uri: str, *, state_file: str | Path | None = None, begin: float | None = None,
                 keepalive: float = 20.0, net_timeout: float = 120.0, connect_timeout: float = 10.0,
                 backoff_initial: float = 1.0, backoff_max: float = 60.0, autosave: bool = True,
                 recorder: Recorder | None = None) -> None:
        super().__init__(uri)
        self.address = _address(uri)
        self.state_file = Path(state_file) if state_file is not None else None
        self.begin, self.keepalive, self.net_timeout = begin, keepalive, net_timeout
        self.connect_timeout = connect_timeout
        self.backoff_initial, self.backoff_max, self.autosave = backoff_initial, backoff_max, autosave
        self.counters = SourceCounters()
        self.recorder = recorder or NullRecorder()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: _Connection | None = None
        self._keys: list[StationKey] = []
        self._lookup = StationLookup()
        self._attempts = 0  # connection attempts since data last flowed
        self._connected_once = False
        self._state = SeedLinkState(self.state_file, uri, self.address)
        # sequence-reset detection (collector thread only): per "NET.STA" the last record received
        # (seq, latest end) and each channel's latest end; stations whose first record after this
        # connect is not checked yet; stations to ask for by time (from there) and those asked so
        self._last: dict[str, tuple[int, float]] = {
            sta: (seq, obspy.UTCDateTime(end).timestamp) for sta, (seq, end) in self._state.committed.items()}
        self._channel_ends: dict[str, dict[str, float]] = {}
        self._unverified: set[str] = set()
        self._by_time: dict[str, float] = {}
        self._asked_by_time: set[str] = set()

    def save_state(self, until: float | Mapping[str, float] | None = None) -> None:
        """Write the resume points (see ``SeedLinkState.save``)."""
        self._state.save(until)

    def _mark_delivered(self, sta: str, seq: int, end: float) -> None:
        self._state.delivered(sta, seq, end)
        if self.autosave:
            self.save_state()

    # ---------------------------------------------------------------- counters

    def _count_error(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        self.counters.errors[kind] += 1
        self.recorder.error(f"seedlink_{kind}")
        log.log(level, "%s: %s", self.uri, message)

    def _count_reconnect(self) -> None:
        self.counters.reconnects += 1
        self.recorder.reconnect(self.uri)
        log.info("%s: reconnected", self.uri)

    def _connected(self) -> None:
        """A new connection: the first record of each station resumed by sequence gets checked."""
        self._asked_by_time = set()
        wanted = {f"{k.network}.{k.station}" for k in self._keys}
        self._unverified = {sta for sta in wanted & set(self._last) if sta not in self._by_time}

    def _continues(self, sta: str, channel: str, seq: int, start: float) -> bool:
        """Whether a record resumed by sequence number continues what we have of ``sta``: its number
        is ahead of ours and it starts where we have that channel's data end (a renumbered server's
        record N+1 lies elsewhere in time: later, or earlier, which would skip other channels' data)."""
        last_seq, last_end = self._last[sta]
        ahead = 0 < (seq - last_seq) % SEQUENCE_MODULUS < SEQUENCE_MODULUS // 2
        expected = self._channel_ends.get(sta, {}).get(channel)
        if expected is None:  # resumed from the state file, which keeps one end per station
            return ahead and start <= last_end + CONTINUITY_TOLERANCE_S
        return ahead and abs(start - expected) <= CONTINUITY_TOLERANCE_S

    def _resume_from(self, sta: str) -> float:
        """Our last sample of ``sta``: the earliest of its channels' latest ends (all channels resume)."""
        ends = self._channel_ends.get(sta)
        return min(ends.values()) if ends else self._last[sta][1]

    def _sequence_reset(self, sta: str, seq: int, start: float) -> None:
        """The server's numbering does not continue ours: ask the unchecked stations again by time."""
        last_seq, last_end = self._last[sta]
        for other in self._unverified | {sta}:
            self._by_time[other] = self._resume_from(other)
        self._unverified = set()
        self._count_error("sequence_reset", f"{sta}: the server's sequence numbers do not continue ours "
                          f"(record {seq:06X} from {obspy.UTCDateTime(start)} after our {last_seq:06X} ending "
                          f"{obspy.UTCDateTime(last_end)}); asking for {', '.join(sorted(self._by_time))} by time "
                          "from their last samples")
        self._conn.disconnect()  # the next collect() reconnects and negotiates TIME for those stations

    def _check_resumed(self, sta: str, channel: str, seq: int, start: float) -> bool:
        """False when the record (of ``channel``, NET.STA.LOC.CHA) must be dropped: it shows a
        sequence reset, or it still belongs to the connection being replaced. Reports data the
        server no longer has."""
        if sta in self._by_time:
            if sta not in self._asked_by_time:
                return False  # from the connection whose numbering was reset
            begin = self._by_time.pop(sta)
            if start > begin + CONTINUITY_TOLERANCE_S:
                station_id = channel.rsplit(".", 1)[0]  # NET.STA.LOC
                self.recorder.data_lost(station_id, start - begin)
                self._count_error("unfilled_gap", f"{station_id}: data from {obspy.UTCDateTime(begin)} to "
                                  f"{obspy.UTCDateTime(start)} ({start - begin:.1f} s) is no longer on the server: "
                                  "lost")
            return True
        if sta in self._unverified:
            self._unverified.discard(sta)
            if not self._continues(sta, channel, seq, start):
                self._sequence_reset(sta, seq, start)
                return False
        return True

    def _backoff_delay(self) -> float:
        if not self._connected_once and self._attempts == 0:
            return 0.0
        return min(self.backoff_max, self.backoff_initial * 2 ** max(self._attempts - 1, 0))

    # ---------------------------------------------------------------- live

    def start(self, stations: Sequence[StationKey], on_trace: Callable[[obspy.Trace], None]) -> None:
        """Connect and collect in a background thread; each trace goes to ``on_trace`` (on that thread)."""
        if self._thread is not None:
            raise SourceError(f"source {self.uri!r}: already started")
        if not stations:
            raise SourceError(f"source {self.uri!r}: no stations to ask for")
        self._keys = list(stations)
        self._lookup = StationLookup(self._keys)
        conn = _Connection(self)
        conn.set_sl_address(self.address)
        conn.keepalive, conn.netto, conn.netdly = self.keepalive, self.net_timeout, 0.01
        if self.begin is not None:
            conn.set_begin_time(obspy.UTCDateTime(self.begin).format_seedlink())
        for (net, sta), sel in selectors(self._keys).items():
            seq = self._state.committed.get(f"{net}.{sta}", (-1, ""))[0]
            conn.add_stream(net, sta, sel, seq, None)
        self._conn = conn
        self._thread = threading.Thread(target=self._collect, args=(on_trace,), name="seedlink-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the collector thread (within about a second) and write the state."""
        self._stopping.set()
        conn = self._conn
        if conn is not None:
            conn.terminate()
            sock = conn.socket
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.autosave:
            self.save_state()

    def close(self) -> None:
        """Same as ``stop``."""
        self.stop()

    def _collect(self, on_trace: Callable[[obspy.Trace], None]) -> None:
        conn = self._conn
        while not self._stopping.is_set():
            try:
                packet = conn.collect()
            except SeedLinkException:
                continue  # connect failed (counted); the next collect() retries after the backoff
            except Exception as exc:  # never let the ingest thread die
                self._count_error("client", f"SeedLink client failure: {exc!r}")
                self._stopping.wait(self._backoff_delay())
                conn.disconnect()
                continue
            if self._stopping.is_set():
                break
            if packet == SLPacket.SLERROR:
                self._count_error("server_error", "server answered ERROR; reconnecting")
            elif packet in (SLPacket.SLTERMINATE, None):
                self._count_error("stream_end", "server ended the stream; reconnecting")
            elif isinstance(packet, SLPacket):
                self._attempts = 0
                self._hand_on(packet, on_trace)
        conn.disconnect()

    def _hand_on(self, packet: SLPacket, on_trace: Callable[[obspy.Trace], None]) -> None:
        try:
            trace = packet.get_trace()
        except Exception as exc:
            self._count_error("decode", f"undecodable record: {exc}")
            return
        s = trace.stats
        if self._lookup.find_trace(trace) is None:
            self._count_error("unexpected_stream", f"dropping record of unrequested stream {trace.id}", logging.DEBUG)
            return
        end = (s.endtime + s.delta).timestamp if s.sampling_rate else s.endtime.timestamp
        sta, seq = f"{s.network}.{s.station}", packet.get_sequence_number()
        if not self._check_resumed(sta, trace.id, seq, s.starttime.timestamp):
            return
        self._last[sta] = (seq, max(end, self._last.get(sta, (seq, end))[1]))
        ends = self._channel_ends.setdefault(sta, {})
        ends[trace.id] = max(end, ends.get(trace.id, end))
        self.counters.records += 1
        self.counters.samples += s.npts
        self.recorder.data(f"{s.network}.{s.station}.{s.location}", s.npts, end)
        try:
            on_trace(trace)
        except Exception as exc:  # a bad record for the handler must not stop the other stations
            self._count_error("callback", f"trace handler failed on {trace.id}: {exc!r}", logging.ERROR)
        self._mark_delivered(sta, seq, end)

    # ---------------------------------------------------------------- bounded

    def get_waveforms(self, stations: Sequence[StationKey], start: float, end: float,
                      timeout: float = 120.0) -> obspy.Stream:
        """The server's buffered data of ``stations`` in ``[start, end]`` (a ``TIME`` window request)."""
        conn = SeedLinkConnection(timeout=timeout)
        conn.set_sl_address(self.address)
        conn.set_begin_time(obspy.UTCDateTime(start).format_seedlink())
        conn.set_end_time(obspy.UTCDateTime(end).format_seedlink())
        for (net, sta), sel in selectors(stations).items():
            conn.add_stream(net, sta, sel, -1, None)
        out, began = obspy.Stream(), time.monotonic()
        try:
            while True:
                packet = conn.collect()
                if not isinstance(packet, SLPacket):
                    break
                out += packet.get_trace()
        except SeedLinkException as exc:
            raise SourceError(f"source {self.uri!r}: {exc}") from exc
        finally:
            conn.close()
        if packet == SLPacket.SLERROR:
            raise SourceError(f"source {self.uri!r}: the server refused the time window request")
        if time.monotonic() - began >= timeout:
            log.warning("%s: time window request timed out after %.0f s; data may be incomplete", self.uri, timeout)
        out = select(out, stations)
        out.trim(obspy.UTCDateTime(start), obspy.UTCDateTime(end), nearest_sample=False)
        self._report_missing(stations, out, start, end)
        return obspy.Stream([tr for tr in out if tr.stats.npts])


class LiveSeedLink:
    """``LiveSource`` over one SeedLink connection for all its stations, on its own collector thread.

    Resume points go to ``state_file`` (``seedlink-HOST_PORT.json`` in ``options.state_dir``), and
    only as far as the caller commits; stations without one start at ``options.begin``.
    """

    poll_every = None

    def __init__(self, uri: str, keys: Sequence[StationKey], put: Put, options: LiveOptions,
                 resume: Mapping[StationKey, float]) -> None:
        name = uri.partition("://")[2].strip("/").replace(":", "_").replace("/", "_")
        self.uri, self.keys, self._put = uri, list(keys), put
        self.state_file: Path | None = options.state_dir / f"seedlink-{name}.json"
        self.source = SeedLinkSource(uri, state_file=self.state_file, begin=options.begin, autosave=False,
                                     backoff_max=10.0, recorder=options.recorder)

    def start(self) -> None:
        self.source.start(self.keys, lambda trace: self._put(trace, time.time()))

    def stop(self) -> None:
        self.source.stop(timeout=5.0)

    def poll(self) -> int:
        """Nothing to poll: the collector thread hands traces on as they arrive."""
        return 0

    def commit(self, until: Mapping[StationKey, float]) -> None:
        """Save the SeedLink sequence numbers of the records ending by ``until`` (per ``NET.STA``)."""
        limits: dict[str, float] = {}
        for key in self.keys:
            sta = f"{key.network}.{key.station}"
            limits[sta] = min(limits.get(sta, float("inf")), until.get(key, float("-inf")))
        self.source.save_state(until=limits)

    def positions(self) -> dict[StationKey, float]:
        """None: a new connection resumes from the state file."""
        return {}
