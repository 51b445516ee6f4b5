"""``eqt-monitor qc`` on real data: PPSD PNGs for chile_2014, and the band PSD of a noisier copy."""
from __future__ import annotations

import json
import logging
import math
import struct
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import obspy
import mseed_records
import pytest

from eqt_monitor.qc import QCSettings, station_quality
from eqt_monitor.records import StationKey

START, END = "2014-05-01T00:00", "2014-05-01T01:00"
PB01 = StationKey("CX", "PB01", "", "HH")


@pytest.mark.slow
def test_qc_command_writes_ppsd_pngs(sds, tmp_path):
    """One hour of CX.PB01/PB02 (no StationXML: PSDs in counts): a PNG per channel and quality.json."""
    config = tmp_path / "stations.yaml"
    stations = "".join(f"  - {{network: CX, station: {s}, channels: 'HH?'}}\n" for s in ("PB01", "PB02"))
    config.write_text(f"source: sds://{sds}\nstations:\n{stations}")
    out = tmp_path / "qc"
    result = subprocess.run([sys.executable, "-m", "eqt_monitor.cli", "qc", "--config", str(config), "--start", START,
                             "--end", END, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"CX.{s}..HH{c}.ppsd.png" for s in ("PB01", "PB02") for c in "ENZ"]
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "no response in the inventory" in result.stderr  # one line per channel without a response
    quality = json.loads((out / "quality.json").read_text())
    z = next(q for q in quality["CX.PB01."] if q["channel"].endswith("HHZ"))
    assert z["unit"] == "counts" and z["segments"] == 1 and z["clipped_samples"] == 0 and not z["flat_hours"]
    assert z["records"] > 0 and z["clock_locked_percent"] is not None
    assert all(b["psd_db"] is not None and b["above_nlnm_db"] is None for b in z["bands"])


@pytest.mark.slow
def test_white_noise_raises_band_psd(sds, tmp_path):
    """Seeded white noise of std 2000 counts (one-sided PSD 2σ²/fs) added to a copy of PB01 HHZ:
    the 0.1–1 s band rises to the power sum of the original level and the noise's."""
    t0, t1 = obspy.UTCDateTime(START), obspy.UTCDateTime(END)
    day = "2014/CX/PB01/HHZ.D/CX.PB01..HHZ.D.2014.121"
    st = obspy.read(str(sds / day), starttime=t0 - 60, endtime=t1 + 60)
    (tmp_path / "clean" / day).parent.mkdir(parents=True)
    st.write(str(tmp_path / "clean" / day), format="MSEED")
    sigma = 2000.0
    rng = np.random.default_rng(17)
    for tr in st:
        tr.data = (tr.data + rng.normal(0.0, sigma, tr.stats.npts)).round().astype(np.int32)
    (tmp_path / "noisy" / day).parent.mkdir(parents=True)
    st.write(str(tmp_path / "noisy" / day), format="MSEED", encoding="STEIM2")

    def band(root: str) -> float:
        result = station_quality({f"sds://{tmp_path / root}": [PB01]}, t0.timestamp, t1.timestamp,
                                 tmp_path / f"out-{root}", settings=QCSettings())
        return result[PB01.id][0].bands[0].psd_db

    clean, noisy = band("clean"), band("noisy")
    noise_db = 10 * math.log10(2 * sigma ** 2 / 100.0)
    expected = 10 * math.log10(10 ** (clean / 10) + 10 ** (noise_db / 10))
    print(f"0.1-1 s band: clean {clean:.2f} dB, noisy {noisy:.2f} dB, expected {expected:.2f} dB (noise alone {noise_db:.2f})")
    assert noisy - clean > 10.0
    assert abs(noisy - expected) < 1.5


HHZ = "2014/CX/PB01/HHZ.D/CX.PB01..HHZ.D.{year}.{doy:03d}"
PB01_Z = StationKey("CX", "PB01", "", "HH")  # only HHZ in the archives built here


def flagged_records(sds) -> list[bytearray]:
    """PB01 HHZ's real records, three in four clock-locked, timing quality 0, 1, ... 100, 0, ..."""
    records = mseed_records.split((sds / HHZ.format(year=2014, doy=121)).read_bytes())
    for i, rec in enumerate(records):
        mseed_records.set_clock(rec, locked=i % 4 != 0, timing_quality=i % 101)
    return records


def expected_timing(records: list[bytearray], start: obspy.UTCDateTime,
                    end: obspy.UTCDateTime) -> tuple[int, float, float]:
    """Number, clock-locked share (%) and median timing quality of the records overlapping
    ``[start, end)``, from their bytes."""
    inside = [i for i, rec in enumerate(records) if mseed_records.start(rec) < end
              and mseed_records.start(rec) + struct.unpack(">H", rec[30:32])[0] / 100.0 > start]
    return len(inside), 100.0 * sum(i % 4 != 0 for i in inside) / len(inside), float(np.median([i % 101 for i in inside]))


def timing_of(root, start: obspy.UTCDateTime, end: obspy.UTCDateTime):
    result = station_quality({f"sds://{root}": [PB01_Z]}, start.timestamp, end.timestamp, None,
                             settings=QCSettings(ppsd_length=600.0))
    return next(q for q in result[PB01_Z.id] if q.channel.endswith("HHZ"))


@pytest.mark.slow
def test_clock_locked_share_is_of_records_across_midnight(sds, tmp_path):
    """PB01 HHZ's records moved 18 h later (00:00-12:00 → 18:00 day 121 … 06:00 day 122) and split
    into the two day files at midnight, a record boundary: the hour around midnight reads the same
    clock-locked share and timing quality as those records read from one file (05:30-06:30 unmoved),
    and both are what the records' bytes say (75 %: not 37.5 %, half of the window per file)."""
    records = flagged_records(sds)
    mseed_records.write(tmp_path / "one" / HHZ.format(year=2014, doy=121), records)
    midnight = obspy.UTCDateTime("2014-05-02T00:00")
    for rec in records:
        mseed_records.shift(rec, 18 * 3600)
    days = [[r for r in records if mseed_records.start(r) < midnight], [r for r in records if mseed_records.start(r) >= midnight]]
    assert len(days[0]) > 1000 and len(days[1]) > 1000
    for doy, part in zip((121, 122), days):
        mseed_records.write(tmp_path / "split" / HHZ.format(year=2014, doy=doy), part)

    one = timing_of(tmp_path / "one", obspy.UTCDateTime("2014-05-01T05:30"), obspy.UTCDateTime("2014-05-01T06:30"))
    split = timing_of(tmp_path / "split", midnight - 1800, midnight + 1800)
    n, locked, tq = expected_timing(records, midnight - 1800, midnight + 1800)
    assert 74.0 < locked < 76.0
    assert split.clock_locked_percent == one.clock_locked_percent == round(locked, 2)
    assert split.timing_quality_median == one.timing_quality_median == tq
    assert split.timing_quality_min == one.timing_quality_min == 0.0
    assert split.records == one.records == n > 500


def test_real_timing_quality_of_chile_is_zero_in_every_record(sds, tmp_path):
    """chile_2014's blockettes 1001 all say timing quality 0 and no record is clock-locked: qc reads
    that, not just "something"."""
    records = mseed_records.split((sds / HHZ.format(year=2014, doy=121)).read_bytes())
    assert {rec[48 + 4] for rec in records} == {0} and not any(rec[37] & mseed_records.CLOCK_LOCKED for rec in records)
    q = timing_of(sds, obspy.UTCDateTime(START), obspy.UTCDateTime(START) + 600)
    assert q.timing_quality_median == q.timing_quality_min == 0.0 and q.clock_locked_percent == 0.0
    assert q.records == expected_timing(records, obspy.UTCDateTime(START), obspy.UTCDateTime(START) + 600)[0]


def test_a_damaged_file_is_named_when_its_flags_stop_short(sds, tmp_path, caplog):
    """Stray bytes after record 300 of a real day file: get_flags reads no further, qc says so in one
    line naming the file (the waveform reader skips the bytes and decodes the records after them)."""
    records = flagged_records(sds)[:700]
    path = tmp_path / HHZ.format(year=2014, doy=121)
    mseed_records.write(path, records[:300] + [bytearray(b"\x00" * 100)] + records[300:])
    with caplog.at_level(logging.WARNING):
        q = timing_of(tmp_path, obspy.UTCDateTime(START), obspy.UTCDateTime(START) + 3600)
    lines = [r.getMessage() for r in caplog.records if "timing quality and clock flags cover only" in r.getMessage()]
    assert lines == [f"{path}: no miniSEED record readable at byte {300 * 512} of {700 * 512 + 100}: timing quality "
                     "and clock flags cover only the records before it"]
    # the data after the damage are still measured: the whole hour, 600 s PSD segments at 50 % overlap
    assert q.records == 300 and q.segments == (3600 - 600) // 300 + 1


def hhz_copy(sds, root, channel: str = "HHZ"):
    """PB01 HHZ's real day file under ``root``, its records relabelled ``channel``."""
    mseed_records.copy_day_file(sds, root, HHZ.format(year=2014, doy=121), channel=channel)


@pytest.mark.slow
def test_two_channel_groups_of_one_station_are_measured_once_each(sds, tmp_path):
    """CX.PB01 configured as HH and HN (an HNZ copy of the real HHZ records): one entry and one PNG per
    channel, not both channels under each group."""
    hhz_copy(sds, tmp_path)
    hhz_copy(sds, tmp_path, "HNZ")
    keys = [StationKey("CX", "PB01", "", "HH"), StationKey("CX", "PB01", "", "HN")]
    t0 = obspy.UTCDateTime(START)
    result = station_quality({f"sds://{tmp_path}": keys}, t0.timestamp, t0.timestamp + 1200, tmp_path / "out",
                             settings=QCSettings(ppsd_length=600.0))
    assert [q.channel for q in result["CX.PB01."]] == ["CX.PB01..HHZ", "CX.PB01..HNZ"]
    hh, hn = result["CX.PB01."]
    assert hh.segments == hn.segments == 3 and hh.bands == hn.bands  # the same samples, measured alike
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["CX.PB01..HHZ.ppsd.png", "CX.PB01..HNZ.ppsd.png"]


@pytest.mark.slow
def test_a_span_read_in_pieces_measures_as_the_whole(sds, tmp_path):
    """Four hours of real PB01 HHZ read an hour at a time give the numbers of one read (hourly PSD
    segments at 50 % overlap straddle the pieces: none is lost or counted twice)."""
    hhz_copy(sds, tmp_path)
    t0 = obspy.UTCDateTime(START).timestamp
    whole, hourly = (station_quality({f"sds://{tmp_path}": [PB01]}, t0 + 1800, t0 + 4 * 3600 + 1800, None,
                                     piece_s=piece)[PB01.id] for piece in (6 * 3600, 3600))
    assert [asdict(q) for q in hourly] == [asdict(q) for q in whole]
    assert whole[0].segments == 7 and len(whole[0].flat_hours + whole[0].empty_hours) == 0
