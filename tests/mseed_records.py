"""Real miniSEED 2 records edited in place (fixed-header fields only, the data untouched): split a day
file at record boundaries, move records by whole seconds, set the clock-locked flag and the
blockette 1001 timing quality. Tests build archives from real records with these."""
from __future__ import annotations

import struct
from pathlib import Path

import obspy

from eqt_monitor.sources.archive import record_length

CLOCK_LOCKED = 0x20  # bit 5 of the I/O and clock flags (byte 37)


def split(raw: bytes) -> list[bytearray]:
    """The records of a (big-endian, blockette 1000) miniSEED file, in file order."""
    out, pos = [], 0
    while pos < len(raw):
        length = record_length(raw, pos)
        assert length is not None, f"no record at byte {pos}"
        out.append(bytearray(raw[pos:pos + length]))
        pos += length
    return out


def start(rec: bytes) -> obspy.UTCDateTime:
    """The record's start time to 0.1 ms (the blockette 1001 microseconds left out)."""
    year, doy, hour, minute, sec, _, fract = struct.unpack(">HHBBBBH", rec[20:30])
    return obspy.UTCDateTime(year=year, julday=doy, hour=hour, minute=minute, second=sec) + fract * 1e-4


def shift(rec: bytearray, seconds: int) -> None:
    """Move the record by whole ``seconds`` (fraction and microseconds kept)."""
    year, doy, hour, minute, sec = struct.unpack(">HHBBB", rec[20:27])
    t = obspy.UTCDateTime(year=year, julday=doy, hour=hour, minute=minute, second=sec) + seconds
    rec[20:27] = struct.pack(">HHBBB", t.year, t.julday, t.hour, t.minute, t.second)


def set_clock(rec: bytearray, locked: bool, timing_quality: int | None = None) -> None:
    """Set or clear the clock-locked flag, and the timing quality of the record's blockette 1001."""
    rec[37] = rec[37] | CLOCK_LOCKED if locked else rec[37] & ~CLOCK_LOCKED
    if timing_quality is None:
        return
    pos = struct.unpack(">H", rec[46:48])[0]
    while pos:
        kind, following = struct.unpack(">HH", rec[pos:pos + 4])
        if kind == 1001:
            rec[pos + 4] = timing_quality
            return
        pos = following
    raise AssertionError("the record has no blockette 1001")


def relabel(rec: bytearray, *, location: str | None = None, channel: str | None = None) -> None:
    """Give the record another location (2 characters, bytes 13-14) or channel code (3, bytes 15-17)."""
    if location is not None:
        rec[13:15] = location.ljust(2).encode()
    if channel is not None:
        rec[15:18] = channel.encode()


def copy_day_file(sds: Path, root: Path, sds_path: str, *, location: str = "", channel: str | None = None) -> Path:
    """The real day file ``sds_path`` (``YEAR/NET/STA/CHA.D/NET.STA.LOC.CHA.D.YEAR.DOY``) under ``root``,
    its records relabelled; the new file's path."""
    records = split((sds / sds_path).read_bytes())
    for rec in records:
        relabel(rec, location=location, channel=channel)
    year, net, sta, cha_dir, name = sds_path.split("/")
    parts = name.split(".")
    cha = channel or parts[3]
    path = root / year / net / sta / f"{cha}.D" / ".".join([net, sta, location, cha, "D", *parts[5:]])
    write(path, records)
    return path


def write(path: Path, records: list[bytearray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(records))
