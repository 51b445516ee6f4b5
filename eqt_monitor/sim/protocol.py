"""SeedLink v3 as the simulator speaks it: stream selectors, what a station request asks for,
SeedLink times, and the INFO documents.

Protocol facts (SeedLink v3, as ObsPy's ``SeedLinkConnection`` and libslink speak it): commands
are ASCII lines ended by CR (optional LF); modifier commands answer ``OK``/``ERROR`` + CRLF;
data packets are ``SL`` + 6 upper-case hex digits (sequence mod 2**24) + a 512-byte record;
INFO answers are ``SLINFO *`` (more follow) / ``SLINFO  `` (last) + a 512-byte ASCII log
record holding XML; dial-up mode (FETCH) and finished time windows end with ``END``.
"""
from __future__ import annotations

import fnmatch
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

import numpy as np
from obspy import Trace, UTCDateTime

from eqt_monitor.sim.archive import RECORD_LENGTH, Record

SEQUENCE_MODULUS = 1 << 24
SOFTWARE = "SeedLink v3.1 (eqt-monitor simulate)"
HELLO_CAPABILITIES = "SLPROTO:3.1 NSWILDCARD BATCH"
INFO_LEVELS = ("ID", "CAPABILITIES", "STATIONS", "STREAMS", "GAPS", "CONNECTIONS", "ALL")
RECORD_TYPES = "DECOTL"


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
class Subscription:
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


def parse_time(text: str) -> float:
    """SeedLink time ``YYYY,MM,DD,hh,mm,ss[,ffffff]`` → POSIX seconds."""
    parts = [int(p) for p in text.split(",")]
    if len(parts) < 6:
        raise ValueError(f"bad SeedLink time {text!r}")
    return UTCDateTime(*parts[:6]).timestamp + (parts[6] / 1e6 if len(parts) > 6 else 0.0)


def seedlink_time(t: float) -> str:
    """POSIX seconds → the time format of INFO documents."""
    return UTCDateTime(t).strftime("%Y/%m/%d %H:%M:%S.%f")[:-2]


def info_packets(xml: str) -> bytes:
    """``SLINFO`` packets carrying ``xml`` in 512-byte ASCII log records (all but the last marked ``*``)."""
    trace = Trace(np.frombuffer(xml.encode("ascii", "replace"), dtype="S1"),
                  header={"network": "SL", "station": "INFO", "channel": "LOG", "sampling_rate": 0.0})
    buf = io.BytesIO()
    trace.write(buf, format="MSEED", reclen=RECORD_LENGTH, encoding="ASCII", byteorder=">")
    raw = buf.getvalue()
    chunks = [raw[i:i + RECORD_LENGTH] for i in range(0, len(raw), RECORD_LENGTH)]
    return b"".join((b"SLINFO *" if i < len(chunks) - 1 else b"SLINFO  ") + c for i, c in enumerate(chunks))


def info_xml(level: str, *, started: float, channels: Sequence[tuple[str, str, str, str]], first_seq: int,
             next_seq: int, begin: float, end: float) -> str:
    """The XML answer to ``INFO level`` (``level`` upper-case, one of ``INFO_LEVELS``) of a server
    started at ``started`` serving ``channels`` (``NET, STA, LOC, CHA``) from ``begin`` to ``end``,
    its buffer holding sequence numbers ``first_seq`` up to (not including) ``next_seq``."""
    head = (f'<?xml version="1.0"?>\n<seedlink software={quoteattr(SOFTWARE)} organization="eqt-monitor" '
            f'started="{seedlink_time(started)}"')
    if level in ("ID", "GAPS", "CONNECTIONS"):
        return head + "/>\n"
    if level == "CAPABILITIES":
        caps = ("dialup", "multistation", "window-extraction", "info:id", "info:capabilities",
                "info:stations", "info:streams")
        return head + ">\n" + "".join(f'<capability name="{c}"/>\n' for c in caps) + "</seedlink>\n"
    body = []
    for net, sta in sorted({(n, s) for n, s, _, _ in channels}):
        attrs = (f'name={quoteattr(sta)} network={quoteattr(net)} description="archive {net}.{sta}" '
                 f'begin_seq="{first_seq % SEQUENCE_MODULUS:06X}" end_seq="{next_seq % SEQUENCE_MODULUS:06X}" '
                 f'stream_check="enabled"')
        if level == "STATIONS":
            body.append(f"<station {attrs}/>\n")
            continue
        streams = "".join(
            f'<stream location={quoteattr(loc)} seedname={quoteattr(cha)} type="D" '
            f'begin_time="{seedlink_time(begin)}" end_time="{seedlink_time(end)}" '
            f'begin_recno="0" end_recno="0" gap_check="disabled" gap_treshold="0"/>\n'
            for n, s, loc, cha in channels if (n, s) == (net, sta))
        body.append(f"<station {attrs}>\n{streams}</station>\n")
    return head + ">\n" + "".join(body) + "</seedlink>\n"
