"""STEAD reader, EqT labels, augmentations and the batch generator, on real stead50 / WHAR traces."""
from __future__ import annotations

import csv
import logging

import h5py
import numpy as np
import pytest

from eqt_monitor.errors import UserError
from eqt_monitor.training.augment import (
    AugmentationRates,
    add_event,
    augment,
    drop_channels,
    event_end,
    shift_event,
)
from eqt_monitor.pipeline.windows import normalize
from eqt_monitor.training.generator import TrainingBatches, training_pair
from eqt_monitor.training.labels import make_labels
from eqt_monitor.training.stead import EARTHQUAKE, NOISE, SteadDataset, SteadTrace, write_stead


@pytest.fixture(scope="module")
def stead50(shared):
    ds = SteadDataset(shared / "data/stead50/waveforms.hdf5", shared / "data/stead50/metadata.csv")
    yield ds
    ds.close()


@pytest.fixture(scope="module")
def whar_noise(shared) -> list[SteadTrace]:
    """The WHAR windows relabelled as noise: real recordings for the noise-trace code paths."""
    with h5py.File(shared / "data/whar_2010/guy_WHAR_aug_30s.hdf5", "r") as f:
        return [
            SteadTrace(name=f"{name}_NO", data=np.asarray(f["data"][name], dtype=np.float32), category=NOISE)
            for name in sorted(f["data"])
        ]


def test_reads_the_old_layout_with_labels_from_attrs(stead50, shared):
    assert len(stead50) == 50
    with open(shared / "data/stead50/metadata.csv", newline="") as fh:
        rows = {r["trace_name"]: r for r in csv.DictReader(fh)}
    for trace in stead50:
        row = rows[trace.name]
        assert trace.category == EARTHQUAKE and trace.is_earthquake
        assert trace.data.shape == (6000, 3) and trace.data.dtype == np.float32
        assert trace.p == int(float(row["p_arrival_sample"]))
        assert trace.s == int(float(row["s_arrival_sample"]))
        assert trace.coda_end == int(float(row["coda_end_sample"]))
    first = stead50.read("109C.TA_20060723155859_EV")
    assert (first.p, first.s, first.coda_end) == (700, 1894, 2896)
    np.testing.assert_allclose(first.snr_db, [56.8, 55.4, 47.4], atol=1e-4)


@pytest.mark.parametrize("layout", ["data", "old"])
def test_both_layouts_round_trip(stead50, whar_noise, tmp_path, layout):
    traces = [stead50.read(n) for n in stead50.names[:5]] + whar_noise[:3]
    h5, csv_path = tmp_path / "w.hdf5", tmp_path / "w.csv"
    assert write_stead(h5, csv_path, traces, layout=layout) == 8
    with h5py.File(h5, "r") as f:
        groups = set(f) if layout == "data" else {"earthquake", "non_earthquake"}
        assert set(f) == groups
    with SteadDataset(h5, csv_path) as back:
        assert back.names == [t.name for t in traces]
        for original in traces:
            copy = back.read(original.name)
            np.testing.assert_array_equal(copy.data, original.data)
            assert (copy.category, copy.p, copy.s, copy.coda_end) == (
                original.category,
                original.p,
                original.s,
                original.coda_end,
            )


def test_bad_records_are_skipped_with_a_warning_and_good_ones_kept(stead50, tmp_path, caplog):
    good = stead50.read(stead50.names[0])
    h5, csv_path = tmp_path / "w.hdf5", tmp_path / "w.csv"
    write_stead(h5, csv_path, [good])
    with h5py.File(h5, "a") as f:
        f["data"].create_dataset("short_EV", data=np.zeros((100, 3), dtype=np.float32))
    with open(csv_path, "a", newline="") as fh:
        fh.write("short_EV,earthquake_local,10,20,30,[20 20 20]\nmissing_EV,earthquake_local,10,20,30,\n")
    with caplog.at_level(logging.WARNING), SteadDataset(h5, csv_path) as ds:
        assert ds.names == [good.name, "short_EV"]
        assert [t.name for t in ds] == [good.name]
    assert "missing_EV" in caplog.text and "short_EV" in caplog.text and "(100, 3)" in caplog.text


def test_operator_mistakes_are_one_line_errors(stead50, tmp_path, shared):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("name,category\nx,noise\n")
    with pytest.raises(UserError, match="bad.csv: no 'trace_name' column"):
        SteadDataset(shared / "data/stead50/waveforms.hdf5", bad_csv)
    with pytest.raises(UserError, match="nope.hdf5: no such file"):
        SteadDataset(tmp_path / "nope.hdf5", bad_csv)
    not_stead = tmp_path / "empty.hdf5"
    h5py.File(not_stead, "w").close()
    with pytest.raises(UserError, match="empty.hdf5: no 'data'"):
        SteadDataset(not_stead, bad_csv)


def test_labels_sit_on_the_picks(stead50):
    for trace in stead50:
        y = make_labels([(trace.p, trace.s)])
        p, s = trace.p, trace.s
        assert y[p, 1] == 1.0 and y[s, 2] == 1.0
        assert int(np.argmax(y[:, 1])) == p and int(np.argmax(y[:, 2])) == s
        # Gaussian, sigma 10 samples, cut at +-20
        assert y[p + 10, 1] == pytest.approx(np.exp(-0.5)) and y[p - 20, 1] == pytest.approx(np.exp(-2))
        assert y[p - 21, 1] == 0.0 and y[p + 21, 1] == 0.0
        # detection 1 on [P, S + 1.4 (S - P)]
        end = min(int(s + 1.4 * (s - p)), 5999)
        ones = np.flatnonzero(y[:, 0])
        assert ones[0] == p and ones[-1] == end and len(ones) == end - p + 1


def test_shifting_never_moves_an_event_out_of_the_window(stead50):
    rng = np.random.default_rng(1)
    for trace in stead50:
        end = event_end(trace)
        for _ in range(20):
            data, p, s, new_end = shift_event(trace.data, trace.p, trace.s, end, rng)
            shift = p - trace.p
            assert 1 <= shift and s - trace.s == shift and new_end - end == shift
            assert new_end < 6000
            np.testing.assert_array_equal(data[p], trace.data[trace.p])
            np.testing.assert_array_equal(data[s], trace.data[trace.s])


def test_second_event_lands_after_the_coda_with_its_labels(stead50):
    rng = np.random.default_rng(2)
    added = 0
    for trace in stead50:
        end = event_end(trace)
        data, second = add_event(trace.data, trace.p, trace.s, end, rng)
        if second is None:
            assert 6000 - (trace.s - trace.p) - 21 - end <= 20
            continue
        added += 1
        p2, s2 = second
        assert end <= p2 and s2 - p2 == trace.s - trace.p and s2 + 21 <= 6000
        np.testing.assert_array_equal(data[:p2], trace.data[:p2])
        scale = (data[p2] - trace.data[p2]) / trace.data[trace.p]
        assert np.allclose(scale, scale[0], rtol=1e-3) and 1 / 9 - 1e-6 <= scale[0] <= 1 + 1e-6
        y = make_labels([(trace.p, trace.s), second])
        assert y[p2, 1] == 1.0 and y[s2, 2] == 1.0 and y[p2, 0] == 1.0
    assert added > 25


def test_dropping_channels_keeps_the_amplitude(stead50):
    rng = np.random.default_rng(3)
    trace = stead50.read(stead50.names[0])
    seen = set()
    for _ in range(60):
        out = drop_channels(trace.data.astype(np.float64), rng)
        kept = np.flatnonzero(np.abs(out).max(axis=0))
        seen.add(len(kept))
        assert len(kept) >= 1
        for c in range(3):
            if c in kept:
                np.testing.assert_allclose(out[:, c], trace.data[:, c] * 3 / len(kept), rtol=1e-6)
            else:
                assert not out[:, c].any()
    assert seen == {1, 2, 3}


def test_noise_traces_get_no_phase_labels_but_do_get_gaps(whar_noise):
    rates = AugmentationRates(drop_channel=0.0, add_gap=1.0)
    visible = 0
    for i, trace in enumerate(whar_noise):
        data, events = augment(trace, np.random.default_rng(i), rates)
        assert events == []
        # WHAR windows hold 30 s of data and 30 s of zeros: a gap shows where it zeroes real samples
        gap = np.flatnonzero(np.all(data == 0, axis=1) & np.any(trace.data != 0, axis=1))
        if len(gap):
            visible += 1
            assert gap[-1] < 5500
            assert len(gap) == gap[-1] - gap[0] + 1  # one contiguous stretch
        kept = np.any(data != 0, axis=1)
        np.testing.assert_array_equal(data[kept], trace.data[kept])
        x, y = training_pair(trace, np.random.default_rng(i), rates)
        assert not y.any() and x.shape == (6000, 3)
        x, y = training_pair(trace)
        assert not y.any()
    assert visible >= 5


def test_augmented_earthquakes_keep_every_event_in_the_window(stead50):
    rng = np.random.default_rng(4)
    for trace in stead50:
        for full in (False, True):
            data, events = augment(trace, rng, AugmentationRates(), full=full)
            assert data.shape == (6000, 3) and np.isfinite(data).all()
            for p, s in events:
                assert 0 <= p < s < 6000


def test_normalize_gives_zero_mean_unit_std_and_leaves_dead_channels_zero():
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 7.0, size=(2, 6000, 3)).astype(np.float32)
    x[1, :, 0] = 4.0
    out = normalize(x)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out[0].std(axis=0), 1, rtol=1e-4)
    assert not out[1, :, 0].any()


def test_batches_are_deterministic_and_half_augmented(stead50):
    names = stead50.names[:8]
    a = TrainingBatches(stead50, names, batch_size=4, seed=7)
    b = TrainingBatches(stead50, names, batch_size=4, seed=7)
    assert len(a) == 4
    xa, (d, p, s), weights = a[1]
    xb, _, _ = b[1]
    assert xa.shape == (4, 6000, 3) and d.shape == p.shape == s.shape == (4, 6000, 1)
    np.testing.assert_array_equal(xa, xb)
    assert p.max(axis=1).min() == pytest.approx(1.0) and s.max(axis=1).min() == pytest.approx(1.0)
    valid = TrainingBatches(stead50, names, batch_size=4, augment=False, shuffle=False)
    assert all(w.shape == (4, 1) and (w == 1).all() for w in weights)  # stead50 has P and S everywhere
    x, (d, p, s), _ = valid[0]
    for row, name in enumerate(names[:4]):
        assert int(np.argmax(p[row, :, 0])) == stead50.read(name).p
