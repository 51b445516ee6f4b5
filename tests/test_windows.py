"""The absolute-time window grid and the model-input preprocessing."""
from __future__ import annotations

import numpy as np
import obspy
import pytest
from obspy.clients.filesystem.sds import Client

from eqt_monitor.pipeline.windows import grid_starts, preprocess, stretch_origin

MAY_1 = obspy.UTCDateTime(2014, 5, 1).timestamp  # a multiple of 30 s since the epoch


def test_grid_windows_start_at_the_samples_nearest_multiples_of_the_step():
    start = MAY_1 + 7.126  # sample 0 at 00:00:07.126; 00:00:30 is nearest sample 2287 (29.996 s)
    starts = grid_starts(stretch_origin(start), 3000, 0, 20000)
    assert starts.tolist() == [2287, 5287, 8287, 11287]  # the next one would end after sample 20000
    assert grid_starts(stretch_origin(start), 3000, 2288, 20000).tolist() == [5287, 8287, 11287]


def test_grid_rounds_to_the_nearest_sample_for_sub_sample_offsets():
    # the chile_2014 archive starts 1.6 ms before midnight: midnight is its sample 0
    start = MAY_1 - 0.001607
    assert grid_starts(stretch_origin(start), 3000, 0, 12000).tolist() == [0, 3000, 6000]
    # 6 ms after midnight: 00:00:30 is 4 ms after sample 2999 (29.996 s) and 6 ms before 3000
    late = MAY_1 + 0.006
    assert grid_starts(stretch_origin(late), 3000, 0, 12000).tolist() == [2999, 5999]


def test_grid_with_another_step_stays_on_its_own_multiples():
    start = MAY_1 + 1.0
    starts = grid_starts(stretch_origin(start), 1000, 0, 10000)
    times = start + starts / 100.0
    assert np.allclose(np.mod(times - MAY_1, 10.0), 0.0)
    assert starts.tolist() == [900, 1900, 2900, 3900]


@pytest.fixture(scope="module")
def real_windows(shared):
    """Four real 60 s windows of CX.PB01 [E, N, Z], raw counts."""
    client = Client(str(shared / "data" / "chile_2014" / "sds"))
    st = client.get_waveforms("CX", "PB01", "", "HH?", obspy.UTCDateTime(MAY_1), obspy.UTCDateTime(MAY_1 + 300))
    data = np.stack([st.select(component=c)[0].data for c in "ENZ"], axis=1).astype(np.float32)
    return np.stack([data[i:i + 6000] for i in (0, 3000, 6000, 20000)])


def test_preprocess_matches_obspy_processing_of_each_channel(real_windows):
    out = preprocess(real_windows)
    for w, window in enumerate(real_windows):
        for c in range(3):
            tr = obspy.Trace(window[:, c].astype(np.float64), header={"sampling_rate": 100.0})
            tr.detrend("demean")
            tr.filter("bandpass", freqmin=1.0, freqmax=45.0, corners=2, zerophase=True)
            tr.taper(max_percentage=0.001, type="cosine")
            expected = (tr.data - tr.data.mean()) / (tr.data - tr.data.mean()).std()
            np.testing.assert_allclose(out[w, :, c], expected, rtol=0, atol=2e-5)


def test_each_window_depends_only_on_its_own_samples(real_windows):
    together = preprocess(real_windows)
    for i in range(len(real_windows)):
        assert np.array_equal(preprocess(real_windows[i:i + 1])[0], together[i])


def test_dead_and_constant_channels_stay_zero(real_windows):
    batch = real_windows[:1].copy()
    batch[0, :, 0] = 0.0
    batch[0, :, 1] = 1234.0
    out = preprocess(batch)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert not out[0, :, :2].any()
    assert out[0, :, 2].std() == pytest.approx(1.0, abs=1e-4)


def test_preprocess_rejects_windows_of_the_wrong_shape():
    with pytest.raises(ValueError, match="6000, 3"):
        preprocess(np.zeros((2, 3000, 3), np.float32))
