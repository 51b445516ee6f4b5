"""The picker: EqT's detection/P/S rules on hand-built traces, SNR, and the incremental picker."""
from __future__ import annotations

import numpy as np
import pytest

from eqt_monitor.pipeline.picker import (
    IncrementalPicker,
    PickerConfig,
    find_peaks,
    pick_events,
    pick_window,
    snr_and_amplitude,
)

THRESHOLDS = {"det_threshold": 0.3, "p_threshold": 0.1, "s_threshold": 0.1}


def bump(n: int, at: int, height: float, width: float = 5.0) -> np.ndarray:
    """A Gaussian bump peaking at sample ``at``."""
    return (height * np.exp(-0.5 * ((np.arange(n) - at) / width) ** 2)).astype(np.float32)


def traces(n: int = 6000):
    d = np.zeros(n, np.float32)
    return d, np.zeros(n, np.float32), np.zeros(n, np.float32)


def test_earliest_s_and_strongest_p_before_it():
    d, p, s = traces()
    d[1000:1500] = 0.8
    p += bump(6000, 950, 0.5) + bump(6000, 1050, 0.7) + bump(6000, 1300, 0.9)  # 1300 is after S - 10
    s += bump(6000, 1200, 0.4) + bump(6000, 1400, 0.6)
    result = pick_window(d, p, s, **THRESHOLDS)
    assert result.detections == [(1000, 1499, pytest.approx(0.8))]
    assert [(q.sample, round(q.probability, 3)) for q in result.p_picks] == [(1050, 0.7)]
    assert [(q.sample, round(q.probability, 3)) for q in result.s_picks] == [(1200, 0.4)]
    assert result.p_picks[0].snr is None  # no data given


def test_a_p_peak_serves_one_detection_only():
    d, p, s = traces()
    d[1000:1201] = 0.8
    d[1250:1501] = 0.8  # starts within 1 s of the first detection's P
    p += bump(6000, 1160, 0.9)
    s += bump(6000, 1195, 0.5) + bump(6000, 1400, 0.5)
    result = pick_window(d, p, s, **THRESHOLDS)
    assert len(result.detections) == 2
    assert [q.sample for q in result.p_picks] == [1160]
    assert [q.sample for q in result.s_picks] == [1195, 1400]


def test_p_window_starts_one_second_before_the_detection_exclusive():
    d, p, s = traces()
    d[1000:1500] = 0.8
    p[899], p[901] = 0.9, 0.5  # single-sample peaks; 899 is not after start - 100
    assert [q.sample for q in pick_window(d, p, s, **THRESHOLDS).p_picks] == [901]
    p[901] = 0.0
    assert pick_window(d, p, s, **THRESHOLDS).p_picks == []


def test_without_s_p_is_the_strongest_peak_before_the_end():
    d, p, s = traces()
    d[2000:2600] = 0.5
    p += bump(6000, 2100, 0.3) + bump(6000, 2500, 0.6) + bump(6000, 2700, 0.95)  # 2700 after the end
    s += bump(6000, 2300, 0.05)  # below the S threshold
    result = pick_window(d, p, s, **THRESHOLDS)
    assert result.s_picks == []
    assert [q.sample for q in result.p_picks] == [2500]


def test_s_must_be_strictly_inside_and_p_more_than_ten_samples_before_s():
    d, p, s = traces()
    d[3000:3100] = 0.9
    s[3000], s[3050] = 0.8, 0.5  # 3000 is the detection's first sample: not strictly inside
    p[3040], p[3039] = 0.9, 0.0  # 3040 is exactly S - 10: excluded
    p[3030] = 0.2
    result = pick_window(d, p, s, **THRESHOLDS)
    assert [q.sample for q in result.s_picks] == [3050]
    assert [q.sample for q in result.p_picks] == [3030]


def test_detection_needs_ten_samples_at_or_above_threshold():
    d, p, s = traces()
    d[100:109] = 0.3  # 9 samples
    d[500:510] = 0.3  # 10 samples, exactly at the threshold
    d[900:950] = 0.29
    assert pick_window(d, p, s, **THRESHOLDS).detections == [(500, 509, pytest.approx(0.3))]


def test_flat_topped_peak_is_picked_on_its_rising_edge_and_ends_are_never_peaks():
    x = np.array([0.9, 0.2, 0.5, 0.5, 0.5, 0.1, 0.3, 0.6], np.float32)
    assert find_peaks(x, 0.1).tolist() == [2]
    assert find_peaks(x, 0.55).tolist() == []


def test_overlong_runs_are_cut_to_the_maximum_length():
    d, p, s = traces()
    d[100:900] = 0.7
    config = PickerConfig(max_detection_samples=300)
    events = pick_events(d, p, s, config)
    assert [(e.start, e.end) for e in events] == [(100, 399)]


def test_snr_follows_eqts_definition_on_a_noise_level_step():
    rng = np.random.default_rng(1)
    data = rng.normal(0.0, 1.0, (4000, 3))
    data[2000:] *= 10.0  # the "signal" is ten times the noise: 20 dB
    data += 5000.0  # a raw-count offset, removed before filtering
    snr, amplitude = snr_and_amplitude(data.astype(np.float32), 2000, 100)
    assert snr == pytest.approx(20.0, abs=1.5)
    # filtered noise of std ~ 10 * sqrt(44/50): the largest of 300 values is a few std
    assert 15.0 < amplitude < 50.0


def test_snr_window_shrinks_at_the_ends_and_vanishes_at_sample_zero():
    rng = np.random.default_rng(2)
    data = rng.normal(0.0, 1.0, (1000, 3))
    assert snr_and_amplitude(data, 0, 100) == (None, None)
    snr, _ = snr_and_amplitude(data, 30, 100)  # 30 samples of noise and of signal
    assert snr is not None and abs(snr) < 6.0


def test_pick_window_with_data_gives_snr_and_amplitude():
    rng = np.random.default_rng(3)
    d, p, s = traces()
    d[1000:1500] = 0.8
    p += bump(6000, 1050, 0.7)
    data = rng.normal(0.0, 1.0, (6000, 3)).astype(np.float32)
    data[1050:] *= 30.0
    (pick,) = pick_window(d, p, s, **THRESHOLDS, data=data).p_picks
    assert pick.snr == pytest.approx(29.5, abs=2.0)
    assert pick.amplitude > 30.0


def random_traces(n: int, rng: np.random.Generator):
    """Traces with many events of random lengths (some longer than the test's maximum)."""
    d, p, s = traces(n)
    for start in np.sort(rng.choice(n - 2000, 60, replace=False)):
        length = int(rng.integers(5, 900))
        d[start:start + length] = np.maximum(d[start:start + length], rng.uniform(0.3, 1.0))
        p += bump(n, int(start + rng.integers(-150, 50)), rng.uniform(0.05, 1.0), rng.uniform(1, 20))
        s += bump(n, int(start + rng.integers(0, 400)), rng.uniform(0.05, 1.0), rng.uniform(1, 20))
    d += rng.uniform(0, 0.05, n).astype(np.float32)  # noise makes many small peaks
    p += rng.uniform(0, 0.12, n).astype(np.float32)
    data = rng.normal(0.0, 100.0, (n, 3)).astype(np.float32)
    return np.stack([d, p, s], axis=1).astype(np.float32), data


def test_incremental_picker_matches_whole_trace_and_holds_little():
    rng = np.random.default_rng(4)
    probs, data = random_traces(60000, rng)
    config = PickerConfig(max_detection_samples=600)
    whole = pick_events(probs[:, 0], probs[:, 1], probs[:, 2], config, data)
    assert len(whole) > 30
    picker = IncrementalPicker(config)
    pieces, i, max_held = [], 0, 0
    while i < len(probs):
        k = int(rng.integers(1, 1500))
        pieces += picker.push(probs[i:i + k], data[i:i + k], stretch_ended=i + k >= len(probs))
        i += k
        max_held = max(max_held, picker.held_samples)
    assert pieces == whole
    # context before a detection + its longest run + context after it + one piece
    assert max_held <= 401 + 600 + 300 + 1500
