"""StationBuffer on real miniSEED records (cut and modified with ObsPy, written as 512-byte records)."""
from __future__ import annotations

import io
import logging

import numpy as np
import obspy
import pytest
from scipy.signal import resample_poly, butter, sosfiltfilt

from eqt_monitor.errors import UserError
from eqt_monitor.pipeline.buffer import GapPolicy, StationBuffer
from segments import iter_segments
from eqt_monitor.records import StationKey

SALTON_BOM = "data/salton_sea_2020/mseed/CI.BOM.2020-10-01T00:00.mseed"
RIDGECREST = "data/ridgecrest_2019/PB.B916..EH.2019-07-07T07-50.mseed"
CHILE_PB01 = "data/chile_2014/sds/2014/CX/PB01/HH{}.D/CX.PB01..HH{}.D.2014.121"
BOM = StationKey("CI", "BOM", "", "HH")


def records(stream: obspy.Stream, reclen: int = 512) -> list[obspy.Trace]:
    """The stream as real miniSEED records: written with ObsPy, read back one record at a time,
    all channels interleaved by start time (as a live server sends them)."""
    out = []
    for tr in stream:
        buf = io.BytesIO()
        obspy.Stream([tr]).write(buf, format="MSEED", reclen=reclen)
        raw = buf.getvalue()
        out += [obspy.read(io.BytesIO(raw[i : i + reclen]), format="MSEED")[0] for i in range(0, len(raw), reclen)]
    return sorted(out, key=lambda r: (r.stats.starttime, r.stats.channel))


def feed(buffer: StationBuffer, traces: list[obspy.Trace]) -> list:
    """Add each trace, popping ready segments after each; then close."""
    segments = []
    for tr in traces:
        buffer.add(tr)
        segments += buffer.pop_ready()
    return segments + buffer.close()


def joined(segments) -> np.ndarray:
    return np.concatenate([s.data for s in segments])


def assert_contiguous(segments) -> None:
    for a, b in zip(segments, segments[1:]):
        if not a.stretch_end:
            assert b.start == pytest.approx(a.end, abs=1e-6)
            assert not b.stretch_start


def as_int(tr: obspy.Trace, data: np.ndarray, rate: float) -> obspy.Trace:
    out = tr.copy()
    out.data = np.round(data).astype(np.int32)
    out.stats.sampling_rate = rate
    return out


@pytest.fixture(scope="module")
def bom(shared) -> obspy.Stream:
    """3 min of CI.BOM HH[ENZ] at 100 Hz (Salton Sea swarm)."""
    st = obspy.read(str(shared / SALTON_BOM))
    for tr in st:
        tr.data = tr.data.astype(np.int32)
    return st


def column(stream: obspy.Stream, letter: str) -> np.ndarray:
    return stream.select(component=letter)[0].data.astype(np.float32)


def test_records_in_time_order_come_out_unchanged(bom):
    buffer = StationBuffer(BOM)
    segments = feed(buffer, records(bom))
    data = joined(segments)
    assert data.shape == (18000, 3)
    for slot, letter in enumerate("ENZ"):
        np.testing.assert_array_equal(data[:, slot], column(bom, letter))
    assert segments[0].start == pytest.approx(bom[0].stats.starttime.timestamp, abs=1e-6)
    assert segments[0].stretch_start and segments[-1].stretch_end
    assert sum(s.stretch_start for s in segments) == 1 and sum(s.stretch_end for s in segments) == 1
    assert_contiguous(segments)
    assert sum(s.filled for s in segments) == 0
    assert buffer.stats.samples_received == 3 * 18000 and buffer.stats.overlap_samples_dropped == 0


@pytest.mark.parametrize("rate", [100, 200, 250, 50, 40, 20])
def test_output_does_not_depend_on_chunking(bom, rate):
    """The same data whole or in random chunks in time order gives the same samples."""
    up, down = {100: (1, 1), 200: (2, 1), 250: (5, 2), 50: (1, 2), 40: (2, 5), 20: (1, 5)}[rate]
    stream = obspy.Stream([as_int(tr, resample_poly(tr.data.astype(float), up, down), rate) for tr in bom])
    whole = StationBuffer(BOM)
    for tr in stream:
        whole.add(tr)
    reference = joined(whole.pop_ready() + whole.close())
    rng = np.random.default_rng(rate)
    chunks = []
    for tr in stream:
        i = 0
        while i < tr.stats.npts:
            n = int(rng.integers(1, 8 * rate))  # up to 8 s, like 512-byte records
            piece = tr.copy()
            piece.data = tr.data[i : i + n]
            piece.stats.starttime = tr.stats.starttime + i / rate
            chunks.append(piece)
            i += n
    chunks.sort(key=lambda c: c.stats.starttime)
    chunked = joined(feed(StationBuffer(BOM), chunks))
    npts = stream[0].stats.npts
    assert reference.shape == chunked.shape == ((npts - 1) * 100 // rate + 1, 3)
    np.testing.assert_allclose(chunked, reference, rtol=1e-6, atol=1e-3)


def bandpass(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return sosfiltfilt(butter(4, [lo, hi], btype="band", fs=100.0, output="sos"), x)


@pytest.mark.parametrize("rate,up,down,band", [(200, 2, 1, (1.0, 40.0)), (250, 5, 2, (1.0, 40.0)), (20, 1, 5, (1.0, 6.0))])
def test_resampled_station_matches_the_original_in_its_passband(bom, rate, up, down, band):
    """A station recorded at another rate (real data resampled to it) comes back at 100 Hz on the
    original's sample times and agrees with the original in the band both rates carry."""
    stream = obspy.Stream([as_int(tr, resample_poly(tr.data.astype(float), up, down), rate) for tr in bom])
    segments = feed(StationBuffer(BOM), records(stream))
    data = joined(segments)
    assert segments[0].start == pytest.approx(bom[0].stats.starttime.timestamp, abs=1e-6)
    assert_contiguous(segments)
    for slot, letter in enumerate("ENZ"):
        original = column(bom, letter).astype(float)
        n = min(len(original), len(data))
        got, want = bandpass(data[:n, slot], *band)[500:-500], bandpass(original[:n], *band)[500:-500]
        assert np.sqrt(np.mean((got - want) ** 2)) < 0.01 * np.sqrt(np.mean(want**2)), letter


def cut(stream: obspy.Stream, start_s: float, length_s: float, letters: str = "ENZ") -> obspy.Stream:
    """The stream with ``length_s`` seconds removed at ``start_s`` from the given components."""
    out = obspy.Stream()
    for tr in stream:
        if tr.stats.channel[-1] not in letters:
            out += tr.copy()
            continue
        t0 = tr.stats.starttime + start_s
        out += tr.slice(endtime=t0 - 0.001, nearest_sample=False)
        out += tr.slice(starttime=t0 + length_s - 0.001, nearest_sample=False)
    return out


def test_short_gap_in_one_component_is_interpolated(bom):
    stream = cut(bom, 60.0, 0.3, letters="N")
    buffer = StationBuffer(BOM)
    segments = feed(buffer, records(stream))
    data = joined(segments)
    assert data.shape == (18000, 3)
    assert sum(s.filled for s in segments) == 30
    assert buffer.stats.gaps_interpolated == 1 and buffer.stats.stretch_breaks == 0
    n = column(bom, "N")
    np.testing.assert_array_equal(data[:6000, 1], n[:6000])
    np.testing.assert_array_equal(data[6030:, 1], n[6030:])
    expected = n[5999] + (n[6030] - n[5999]) * np.arange(1, 31) / 31
    np.testing.assert_allclose(data[6000:6030, 1], expected, rtol=1e-6)
    np.testing.assert_array_equal(data[:, 2], column(bom, "Z"))


def test_gap_in_every_component_is_zero_filled_when_shorter_than_the_limit(bom):
    stream = cut(bom, 60.0, 5.0)
    buffer = StationBuffer(BOM)
    segments = feed(buffer, records(stream))
    data = joined(segments)
    assert data.shape == (18000, 3)
    assert sum(s.stretch_start for s in segments) == 1
    assert sum(s.filled for s in segments) == 500
    assert not data[6000:6500].any()
    assert buffer.stats.gaps_zero_filled == 3
    np.testing.assert_array_equal(data[6500:, 2], column(bom, "Z")[6500:])


def test_long_gap_ends_the_stretch(bom):
    stream = cut(bom, 40.0, 70.0)
    buffer = StationBuffer(BOM)
    segments = feed(buffer, records(stream))
    assert_contiguous(segments)
    ends = [i for i, s in enumerate(segments) if s.stretch_end]
    assert len(ends) == 2 and segments[ends[0] + 1].stretch_start
    before, after = joined(segments[: ends[0] + 1]), joined(segments[ends[0] + 1 :])
    assert len(before) == 4000 and len(after) == 18000 - 11000
    assert segments[ends[0]].end == pytest.approx(bom[0].stats.starttime.timestamp + 40.0, abs=1e-6)
    assert segments[ends[0] + 1].start == pytest.approx(bom[0].stats.starttime.timestamp + 110.0, abs=1e-6)
    np.testing.assert_array_equal(after[:, 0], column(bom, "E")[11000:])
    assert buffer.stats.stretch_breaks == 1 and sum(s.filled for s in segments) == 0


def test_duplicates_and_overlaps_keep_the_first_samples(bom):
    recs = records(bom)
    z = [r for r in recs if r.stats.channel == "HHZ"]
    overlapping = z[10].copy()  # same times as record 10, other values: must not replace them
    overlapping.data = overlapping.data * 2 + 1
    overlapping.stats.starttime -= 1.0  # reaches 1 s into record 9
    sequence = []
    for r in recs:
        sequence.append(r)
        if r is z[10]:
            sequence += [z[10].copy(), z[9].copy(), overlapping]
    buffer = StationBuffer(BOM)
    data = joined(feed(buffer, sequence))
    assert data.shape == (18000, 3)
    for slot, letter in enumerate("ENZ"):
        np.testing.assert_array_equal(data[:, slot], column(bom, letter))
    assert buffer.stats.overlap_samples_dropped == z[10].stats.npts + z[9].stats.npts + overlapping.stats.npts


def test_records_out_of_order_are_merged(bom):
    recs = records(bom)
    swapped = recs[:]
    for i in range(12, len(swapped) - 7, 7):  # after the first records (they define where the data starts)
        swapped[i], swapped[i + 4] = swapped[i + 4], swapped[i]
    data = joined(feed(StationBuffer(BOM), swapped))
    for slot, letter in enumerate("ENZ"):
        np.testing.assert_array_equal(data[:, slot], column(bom, letter))


def test_z_only_station_runs_with_zeros_for_the_horizontals(bom, caplog):
    z_only = records(bom.select(component="Z"))
    declared = joined(feed(StationBuffer(BOM, channels=["HHZ"]), z_only))
    np.testing.assert_array_equal(declared[:, 2], column(bom, "Z"))
    assert not declared[:, :2].any()
    undeclared = StationBuffer(BOM)
    with caplog.at_level(logging.WARNING):
        early = []
        for r in z_only:
            undeclared.add(r)
            early += undeclared.pop_ready()
    assert len(joined(early)) == 18000 - 1  # not stalled waiting for E and N (one sample held for the end mark)
    np.testing.assert_array_equal(joined(early + undeclared.close()), declared)
    assert sum("no E data" in m for m in caplog.messages) == 1


def test_z12_station_maps_2_to_e_and_1_to_n(shared):
    st = obspy.read(str(shared / RIDGECREST), starttime=obspy.UTCDateTime("2019-07-07T08:00:00"),
                    endtime=obspy.UTCDateTime("2019-07-07T08:01:00"))
    assert sorted(tr.stats.channel for tr in st) == ["EH1", "EH2", "EHZ"]
    data = joined(feed(StationBuffer(StationKey("PB", "B916", "", "EH")), records(st)))
    np.testing.assert_array_equal(data[:, 0], st.select(channel="EH2")[0].data.astype(np.float32))
    np.testing.assert_array_equal(data[:, 1], st.select(channel="EH1")[0].data.astype(np.float32))
    np.testing.assert_array_equal(data[:, 2], st.select(channel="EHZ")[0].data.astype(np.float32))


def test_sampling_rate_change_is_counted_and_the_data_goes_on(bom, caplog):
    first = bom.slice(endtime=bom[0].stats.starttime + 89.995, nearest_sample=False)
    second = bom.slice(starttime=bom[0].stats.starttime + 90.0)
    second = obspy.Stream([as_int(tr, resample_poly(tr.data.astype(float), 2, 1), 200.0) for tr in second])
    buffer = StationBuffer(BOM)
    with caplog.at_level(logging.WARNING):
        segments = feed(buffer, records(first) + records(second))
    assert buffer.stats.rate_changes == 3  # one per component
    assert any("changed sampling rate from 100 to 200 Hz" in m for m in caplog.messages)
    data = joined(segments)
    assert_contiguous(segments)
    assert len(data) == 18000 and sum(s.stretch_start for s in segments) == 1
    z = column(bom, "Z").astype(float)
    got, want = bandpass(data[:, 2], 1, 40)[9500:-500], bandpass(z, 1, 40)[9500:-500]
    assert np.sqrt(np.mean((got - want) ** 2)) < 0.01 * np.sqrt(np.mean(want**2))


def test_dead_component_is_zero_filled_after_the_timeout(bom, caplog):
    stream = bom.copy()
    e = stream.select(component="E")[0]
    e.trim(endtime=e.stats.starttime + 59.995, nearest_sample=False)  # E stops after 60 s, N and Z go on for 3 min
    buffer = StationBuffer(BOM)
    segments = []
    with caplog.at_level(logging.WARNING):
        for r in records(stream):
            buffer.add(r)
            segments += buffer.pop_ready()
    assert len(joined(segments)) == 18000 - 1  # handed on without waiting for E
    data = joined(segments + buffer.close())
    assert len(data) == 18000
    np.testing.assert_array_equal(data[:6000, 0], column(bom, "E")[:6000])
    assert not data[6000:, 0].any()
    np.testing.assert_array_equal(data[:, 2], column(bom, "Z"))
    assert buffer.stats.dead_channel_outages == 1
    assert sum("no E data" in m for m in caplog.messages) == 1


def blind_marks(segments) -> np.ndarray:
    return np.concatenate([s.blind if s.blind is not None else np.zeros(len(s.data), dtype=bool) for s in segments])


def test_zero_filled_gaps_are_marked_for_blinding_interpolated_ones_are_not(bom):
    stream = cut(cut(bom, 60.0, 4.0, letters="N"), 120.0, 0.3, letters="Z")
    segments = feed(StationBuffer(BOM), records(stream))
    marks = blind_marks(segments)
    assert np.flatnonzero(marks).tolist() == list(range(6000, 6400))  # the 4 s of zeros, not the 0.3 s interpolated


def test_a_dead_component_is_marked_where_its_zeros_start_and_end(bom):
    stream = cut(bom, 50.0, 70.0, letters="E")  # E silent for 70 s: longer than dead_channel_s
    segments = []
    buffer = StationBuffer(BOM)
    for r in records(stream):
        buffer.add(r)
        segments += buffer.pop_ready()
    segments += buffer.close()
    data, marks = joined(segments), blind_marks(segments)
    assert len(data) == 18000 and not data[5000:12000, 0].any()
    marked = np.flatnonzero(marks)
    assert marked[0] == 5000 and marked[-1] >= 12000 - 1  # the edges: zeros start, data again
    assert len(marked) < 0.2 * 7000  # not the whole outage


def test_memory_stays_within_a_window_and_a_step(shared):
    """20 min of a real station fed record by record never holds more than 6000 + 3000 samples."""
    t0 = obspy.UTCDateTime("2014-05-01T03:00:00")
    st = obspy.Stream()
    for c in "ENZ":
        st += obspy.read(str(shared / CHILE_PB01.format(c, c)), starttime=t0, endtime=t0 + 1200)
    buffer = StationBuffer(StationKey("CX", "PB01", "", "HH"))
    segments, most = [], 0
    for r in records(st):
        buffer.add(r)
        segments += buffer.pop_ready()
        most = max(most, buffer.held_samples)
    data = joined(segments + buffer.close())
    assert 0 < most <= 9000
    assert len(data) == 120001
    np.testing.assert_array_equal(data[:, 2], st.select(component="Z")[0].data.astype(np.float32))


def test_iter_segments_is_the_buffer_over_a_bounded_stream(bom):
    other = bom.copy()
    for tr in other:
        tr.stats.station = "XYZ"
    segments = iter_segments(bom + other)
    assert set(segments) == {BOM, StationKey("CI", "XYZ", "", "HH")}
    for key, segs in segments.items():
        np.testing.assert_array_equal(joined(segs)[:, 1], column(bom, "N"))
        assert segs[-1].stretch_end and segs[0].stretch_start


def test_non_finite_samples_are_a_gap_not_a_lost_record(bom, caplog):
    recs = records(bom)
    bad = recs[5].copy()
    bad.data = bad.data.astype(np.float64)
    bad.data[3] = np.nan
    buffer = StationBuffer(BOM)
    with caplog.at_level(logging.WARNING):
        buffer.add(bad)
    assert buffer.stats.nonfinite_samples == 1 and buffer.stats.bad_records == 0
    assert "non-finite" in caplog.text and bad.id in caplog.text
    data = joined(feed(buffer, recs))  # the clean copy of record 5 fills the one-sample hole
    for slot, letter in enumerate("ENZ"):
        np.testing.assert_array_equal(data[:, slot], column(bom, letter))


@pytest.mark.parametrize("bad, how", [(slice(300, 301), "interpolated"), (slice(300, 400), "zeros")])
def test_non_finite_samples_follow_the_gap_policy(bom, bad, how):
    st = bom.copy()
    z = st.select(component="Z")[0]
    z.data = z.data.astype(np.float64)
    z.data[bad] = np.inf if how == "zeros" else np.nan
    buffer = StationBuffer(BOM)
    data = joined(feed(buffer, records(st)))
    clean = column(bom, "Z")
    outside = np.ones(len(clean), dtype=bool)
    outside[bad] = False
    np.testing.assert_array_equal(data[outside, 2], clean[outside])
    n = bad.stop - bad.start
    assert buffer.stats.nonfinite_samples == n
    if how == "zeros":
        assert not data[bad, 2].any()
    else:  # the one missing sample lies between its neighbours
        assert data[bad, 2][0] == np.float32((clean[bad.start - 1] + clean[bad.stop]) / 2)


def test_bad_gap_policy_and_channel_are_user_errors():
    with pytest.raises(UserError, match="interpolate_max_s"):
        GapPolicy(interpolate_max_s=5, zero_fill_max_s=1)
    with pytest.raises(UserError, match="dead_channel_s"):
        GapPolicy(dead_channel_s=600)
    with pytest.raises(UserError, match="CI.BOM"):
        StationBuffer(BOM, channels=["HHX"])
