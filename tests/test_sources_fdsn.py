"""FDSNSource against a real portable-fdsnws-dataselect server on 127.0.0.1."""
from __future__ import annotations

import logging

import numpy as np
import obspy
import pytest

from segments import iter_segments
from eqt_monitor.records import StationKey
from eqt_monitor.sources import SourceError, open_source
from eqt_monitor.sources.base import LiveOptions
from eqt_monitor.sources.fdsn import LiveFDSN
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


# polling (LiveFDSN) against the same real server
SIX = obspy.UTCDateTime("2014-05-01T06:00:00").timestamp


def polled(address: str, keys, begin: float, tmp_path):
    """A ``LiveFDSN`` on ``address`` from ``begin`` and the list its traces are handed to."""
    got: list[obspy.Trace] = []
    live = LiveFDSN(f"fdsn://{address}", keys, lambda trace, arrived: got.append(trace),
                    LiveOptions(tmp_path, begin=begin), {})
    return live, got


def assert_delivered_once(got, expected: obspy.Stream) -> None:
    """``got`` holds every sample of ``expected`` once: one gap-free trace per channel, same samples."""
    delivered = obspy.Stream([tr.copy() for tr in got]).merge(method=-1).sort()
    expected = expected.copy().merge(method=-1).sort()
    assert sorted({tr.id for tr in delivered}) == [tr.id for tr in expected]
    for b in expected:
        pieces = delivered.select(id=b.id)
        assert len(pieces) == 1, f"{b.id}: {len(pieces) - 1} gap(s) in what was delivered"
        a = pieces[0]
        assert (a.stats.starttime, a.stats.npts) == (b.stats.starttime, b.stats.npts), a.id
        assert sum(tr.stats.npts for tr in got if tr.id == b.id) == b.stats.npts, f"{b.id}: samples delivered twice"
        np.testing.assert_array_equal(a.data, b.data)


def test_polling_goes_on_for_the_others_when_a_station_has_no_data(shared, chile_server, tmp_path):
    """A station the server has nothing for (offline) must not stop the others' polls: each poll
    delivers the two served stations' new half hour, past the first hour too."""
    offline = StationKey("CX", "PB99", "", "HH")
    live, got = polled(chile_server, CHILE + [offline], SIX, tmp_path)
    for n in (1, 2, 3):
        before = len(got)
        live.poll(now=SIX + n * 1800)
        assert {tr.stats.station for tr in got[before:]} == {"PB01", "PB02"}, f"poll {n}"
    sds = open_source(f"sds://{shared / 'data/chile_2014/sds'}")
    assert_delivered_once(got, sds.get_waveforms(CHILE, SIX, SIX + 3 * 1800))
    assert SIX + 3600 < live.positions()[offline] < SIX + 3 * 1800, "the silent station moved on, behind now"


def test_polling_fetches_a_channel_that_arrives_later_than_its_siblings(shared, tmp_path):
    """PB01's HHN reaches the server only up to 06:05 by the first poll (06:10) and in full by the
    second (06:20): its 06:05-06:10 is fetched by the second poll, nothing is delivered twice."""
    day = shared / "data/chile_2014/sds/2014/CX/PB01"
    full = {c: obspy.read(str(day / f"HH{c}.D/CX.PB01..HH{c}.D.2014.121"),
                          starttime=obspy.UTCDateTime(SIX - 60), endtime=obspy.UTCDateTime(SIX + 1260))
            for c in "ZNE"}
    files = {c: tmp_path / f"PB01.HH{c}.mseed" for c in "ZNE"}
    for c, stream in full.items():
        stream.slice(endtime=obspy.UTCDateTime(SIX + 300) if c == "N" else None).write(str(files[c]), format="MSEED")
    db = tmp_path / "index.sqlite"
    build_index(sorted(files.values()), db)
    with dataselect_server(db, tmp_path) as address:
        live, got = polled(address, CHILE[:1], SIX, tmp_path)
        live.poll(now=SIX + 600)
        assert {tr.stats.channel for tr in got} == {"HHZ", "HHN", "HHE"}
        full["N"].write(str(files["N"]), format="MSEED")
        build_index([files["N"]], db)
        live.poll(now=SIX + 1200)
    span = obspy.Stream([tr for s in full.values() for tr in s]).trim(obspy.UTCDateTime(SIX), obspy.UTCDateTime(SIX + 1200),
                                                                            nearest_sample=False)
    assert_delivered_once(got, span)
