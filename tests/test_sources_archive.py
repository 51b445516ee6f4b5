"""SDS and file sources, URI handling and corrupt records, on real miniSEED."""
from __future__ import annotations

import io
import logging

import numpy as np
import obspy
import pytest

from eqt_monitor.errors import UserError
from eqt_monitor.records import StationKey
from eqt_monitor.sources import open_source
from eqt_monitor.sources.archive import FileSource, SDSSource, read_mseed

BOM = StationKey("CI", "BOM", "", "HH")
PB01 = StationKey("CX", "PB01", "", "HH")
T0 = obspy.UTCDateTime("2014-05-01T02:00:00").timestamp


def test_open_source_picks_by_scheme(shared):
    assert isinstance(open_source(f"sds://{shared / 'data/chile_2014/sds'}"), SDSSource)
    assert isinstance(open_source(f"file://{shared / 'data/salton_sea_2020/mseed'}"), FileSource)
    globbed = open_source(f"file://{shared / 'data/salton_sea_2020/mseed/CI.B*.mseed'}")
    assert globbed.paths == sorted((shared / "data/salton_sea_2020/mseed").glob("CI.B*.mseed")) and globbed.paths


@pytest.mark.parametrize("uri,words", [
    ("ftp://example.org/data", "ftp://example.org/data"),
    ("/plain/path", "/plain/path"),
    ("sds:///no/such/archive", "/no/such/archive"),
    ("file:///no/such/file.mseed", "/no/such/file.mseed"),
    ("file:///no/such/dir/*.mseed", "no file matches"),
])
def test_bad_uri_is_a_one_line_user_error(uri, words):
    with pytest.raises(UserError, match=words.replace("*", r"\*").replace(".", r"\.")) as err:
        open_source(uri)
    assert uri in str(err.value) and "\n" not in str(err.value)


def test_sds_read_matches_the_day_files(shared):
    root = shared / "data/chile_2014/sds"
    got = open_source(f"sds://{root}").get_waveforms([PB01], T0, T0 + 600)
    assert sorted(tr.stats.channel for tr in got) == ["HHE", "HHN", "HHZ"]
    for tr in got:
        day = obspy.read(str(next(root.rglob(f"CX.PB01..{tr.stats.channel}.D.2014.121"))))[0]
        assert tr.stats.starttime >= obspy.UTCDateTime(T0) and tr.stats.endtime <= obspy.UTCDateTime(T0 + 600)
        assert tr.stats.npts == 60000
        i = int(round((tr.stats.starttime - day.stats.starttime) * 100))
        np.testing.assert_array_equal(tr.data, day.data[i : i + 60000])


def test_sds_finds_records_that_start_before_midnight(shared, tmp_path):
    """A record that begins on the previous day sits in that day's file: it is read too."""
    tr = obspy.read(str(shared / "data/salton_sea_2020/mseed/CI.BOM.2020-10-01T00:00.mseed"), format="MSEED")[0]
    tr.stats.starttime = obspy.UTCDateTime("2020-09-30T23:59:30")
    tr.data = tr.data.astype(np.int32)
    folder = tmp_path / "2020/CI/BOM/HHE.D"
    folder.mkdir(parents=True)
    obspy.Stream([tr]).write(str(folder / "CI.BOM..HHE.D.2020.274"), format="MSEED", reclen=4096)  # one day file
    start = obspy.UTCDateTime("2020-10-01T00:00:00").timestamp
    got = open_source(f"sds://{tmp_path}").get_waveforms([BOM], start, start + 10)
    assert sum(t.stats.npts for t in got) == 1001  # 00:00:00.00 to 00:00:10.00 inclusive


def test_channel_pattern_selects_the_station_channels(shared, caplog):
    source = open_source(f"file://{shared / 'data/ridgecrest_2019'}")
    start = obspy.UTCDateTime("2019-07-07T08:00:00").timestamp
    got = source.get_waveforms([StationKey("PB", "B916", "", "EH")], start, start + 30)
    assert sorted(tr.id for tr in got) == ["PB.B916..EH1", "PB.B916..EH2", "PB.B916..EHZ"]
    with caplog.at_level(logging.WARNING):
        assert len(source.get_waveforms([StationKey("PB", "B916", "", "HH")], start, start + 30)) == 0
        assert len(source.get_waveforms([StationKey("PB", "B916", "", "HH")], start, start + 30)) == 0
    assert sum("PB.B916..HH?" in m and "no data" in m for m in caplog.messages) == 1


def test_file_source_reads_only_the_span(shared):
    source = open_source(f"file://{shared / 'data/salton_sea_2020/mseed/*.mseed'}")
    start = obspy.UTCDateTime("2020-10-01T00:01:00").timestamp
    got = source.get_waveforms([BOM, StationKey("CI", "COA", "", "HH")], start, start + 20)
    assert sorted({tr.stats.station for tr in got}) == ["BOM", "COA"] and len(got) == 6
    assert all(tr.stats.starttime >= obspy.UTCDateTime(start) and tr.stats.endtime <= obspy.UTCDateTime(start + 20) for tr in got)


@pytest.fixture
def corrupt_file(shared, tmp_path):
    """CI.BOM HHZ as 512-byte records with record 5's data and record 9's header destroyed."""
    tr = obspy.read(str(shared / "data/salton_sea_2020/mseed/CI.BOM.2020-10-01T00:00.mseed"), channel="HHZ")[0]
    tr.data = tr.data.astype(np.int32)
    buf = io.BytesIO()
    obspy.Stream([tr]).write(buf, format="MSEED", reclen=512, encoding="STEIM2")
    raw = bytearray(buf.getvalue())
    good = [obspy.read(io.BytesIO(bytes(raw[i : i + 512])))[0] for i in range(0, len(raw), 512)]
    raw[5 * 512 + 64 : 5 * 512 + 300] = b"\x7f" * 236  # Steim frames that cannot decode
    raw[9 * 512 : 9 * 512 + 48] = b"\xff" * 48  # not a record header any more
    path = tmp_path / "CI.BOM.corrupt.mseed"
    path.write_bytes(bytes(raw))
    return path, tr, good


@pytest.mark.filterwarnings("ignore::obspy.io.mseed.InternalMSEEDWarning")  # from the plain obspy.read below
def test_corrupt_records_are_skipped_and_the_rest_is_used(corrupt_file, caplog):
    path, original, good = corrupt_file
    with pytest.raises(Exception):
        obspy.read(str(path))  # ObsPy alone gives up on the whole file
    with caplog.at_level(logging.WARNING):
        got = read_mseed(path)
    warnings = [m for m in caplog.messages if str(path) in m]
    assert len(warnings) == 1 and "2560" in warnings[0] and "4608" in warnings[0]
    expected = sum(r.stats.npts for i, r in enumerate(good) if i not in (5, 9))
    assert sum(tr.stats.npts for tr in got) == expected
    for tr in got:  # every sample kept is the original one
        i = int(round((tr.stats.starttime - original.stats.starttime) * 100))
        np.testing.assert_array_equal(tr.data, original.data[i : i + tr.stats.npts])


def test_file_source_uses_the_good_records_of_a_corrupt_file(corrupt_file, caplog):
    path, original, good = corrupt_file
    start = good[6].stats.starttime.timestamp
    with caplog.at_level(logging.WARNING):
        got = open_source(f"file://{path}").get_waveforms([BOM], start, start + 5)
    assert sum(tr.stats.npts for tr in got) == 501
    assert any(str(path) in m for m in caplog.messages)
