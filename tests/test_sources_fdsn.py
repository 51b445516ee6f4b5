"""FDSNSource against a real portable-fdsnws-dataselect server on 127.0.0.1."""
from __future__ import annotations

import logging

import numpy as np
import obspy
import pytest

from segments import iter_segments
from eqt_monitor.records import StationKey
from eqt_monitor.sources import SourceError, open_source
from fdsn_server import build_index, dataselect_server, fix_latest_offsets, free_port

CHILE = [StationKey("CX", "PB01", "", "HH"), StationKey("CX", "PB02", "", "HH")]
# 10 minutes that end after the day files' last hourly index entry (10:59:56): the span the
# unfixed mseedindex offsets break
START, END = obspy.UTCDateTime("2014-05-01T10:55:00").timestamp, obspy.UTCDateTime("2014-05-01T11:05:00").timestamp


@pytest.fixture(scope="module")
def chile_server(shared, tmp_path_factory):
    work = tmp_path_factory.mktemp("fdsn")
    db = work / "index.sqlite"
    build_index(sorted((shared / "data/chile_2014/sds").rglob("*.D.2014.121")), db)
    with dataselect_server(db, work) as address:
        yield address


def test_fdsn_and_sds_serve_identical_samples(shared, chile_server):
    """The same 10 minutes from the server and from the SDS files: identical traces and segments."""
    served = open_source(f"fdsn://{chile_server}").get_waveforms(CHILE, START, END)
    local = open_source(f"sds://{shared / 'data/chile_2014/sds'}").get_waveforms(CHILE, START, END)
    assert len(served.select(station="PB01")) and len(served.select(station="PB02"))
    for stream in (served, local):
        stream.merge(method=-1)
        stream.sort()
    assert [tr.id for tr in served] == [tr.id for tr in local] and len(served) == 6
    for a, b in zip(served, local):
        assert a.stats.starttime == b.stats.starttime and a.stats.npts == b.stats.npts == 60000
        np.testing.assert_array_equal(a.data, b.data)
    from_server, from_files = iter_segments(served), iter_segments(local)
    for key in CHILE:
        a, b = from_server[key], from_files[key]
        assert [s.start for s in a] == [s.start for s in b]
        np.testing.assert_array_equal(np.concatenate([s.data for s in a]), np.concatenate([s.data for s in b]))


def test_unfixed_index_cuts_trimmed_requests_short(shared, tmp_path):
    """Why the set-up fixes the index: as mseedindex 3.0.8 writes it, the server returns less
    than asked for a span ending after the last hourly entry; after the fix, all of it."""
    db = tmp_path / "raw.sqlite"
    build_index(sorted((shared / "data/chile_2014/sds/2014/CX/PB01/HHZ.D").glob("*.121")), db, fix=False)
    key = [StationKey("CX", "PB01", "", "HH")]
    with dataselect_server(db, tmp_path) as address:
        source = open_source(f"fdsn://{address}")
        before = sum(tr.stats.npts for tr in source.get_waveforms(key, START, END))
        assert fix_latest_offsets(db) == 1
        after = sum(tr.stats.npts for tr in source.get_waveforms(key, START, END))
    assert before < 60000 and after == 60000


def test_station_without_data_is_left_out_and_logged_once(chile_server, caplog):
    source = open_source(f"fdsn://{chile_server}")
    missing = StationKey("CX", "PB99", "", "HH")
    with caplog.at_level(logging.WARNING):
        first = source.get_waveforms(CHILE[:1] + [missing], START, START + 60)
        second = source.get_waveforms([missing], START, START + 60)
    assert {tr.stats.station for tr in first} == {"PB01"} and len(second) == 0
    assert sum("PB99" in m for m in caplog.messages) == 1


def test_unreachable_server_is_a_one_line_error():
    uri = f"fdsn://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError, match=uri.replace(".", r"\.")) as err:
        open_source(uri).get_waveforms(CHILE, START, END)
    assert "\n" not in str(err.value)
