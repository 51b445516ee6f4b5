"""The 25 metrics of DESIGN.md §4 on hand-made outcomes whose counts are worked out by hand."""
from __future__ import annotations

import math

import pytest

from eqt_monitor.training.metrics import LOWER_IS_BETTER, METRIC_NAMES, MetricTally


def test_there_are_exactly_the_25_design_metrics():
    assert len(METRIC_NAMES) == 25 == len(set(METRIC_NAMES))
    assert METRIC_NAMES[:7] == ("det_precision", "det_recall", "det_f1", "d_tp", "d_fp", "d_tn", "d_fn")
    for phase in "ps":
        for m in ("precision", "recall", "f1", "mae", "rmse", "tp", "fp", "tn", "fn"):
            assert f"{phase}_{m}" in METRIC_NAMES
    assert LOWER_IS_BETTER == {f"{x}_{m}" for x in "dps" for m in ("fp", "fn")} | {
        f"{x}_{m}" for x in "ps" for m in ("mae", "rmse")
    }


def test_counts_follow_the_design_rules():
    t = MetricTally(tolerance_s=0.5)
    det = [(100, 400)]
    # eq 1: P 0.2 s late (tp), S 0.6 s early (fp + fn)
    t.add(earthquake=True, p_label=1000, s_label=2000, detections=det, p_picks=[1020], s_picks=[1940])
    # eq 2: nothing found
    t.add(earthquake=True, p_label=800, s_label=1500, detections=[], p_picks=[], s_picks=[])
    # eq 3: no S label; P pick exactly 0.5 s early (tp at the tolerance); the closer of two picks counts
    t.add(earthquake=True, p_label=700, s_label=None, detections=det, p_picks=[3000, 650], s_picks=[1200])
    # noise 1: a detection and a P pick; noise 2: clean
    t.add(earthquake=False, p_label=None, s_label=None, detections=det, p_picks=[10], s_picks=[])
    t.add(earthquake=False, p_label=None, s_label=None, detections=[], p_picks=[], s_picks=[])
    r = t.result()
    assert list(r)[:25] == list(METRIC_NAMES) and r["n_events"] == 3
    assert (r["d_tp"], r["d_fp"], r["d_tn"], r["d_fn"]) == (2, 1, 1, 1)
    assert r["det_precision"] == pytest.approx(2 / 3) and r["det_recall"] == pytest.approx(2 / 3)
    assert r["det_f1"] == pytest.approx(2 / 3)
    assert (r["p_tp"], r["p_fp"], r["p_tn"], r["p_fn"]) == (2, 1, 1, 1)
    assert r["p_precision"] == pytest.approx(2 / 3) and r["p_recall"] == pytest.approx(2 / 3)
    assert r["p_mae"] == pytest.approx((0.2 + 0.5) / 2)
    assert r["p_rmse"] == pytest.approx(math.sqrt((0.04 + 0.25) / 2))
    # S: eq1 fp+fn, eq2 fn, eq3 left out, noise1 tn (no S pick), noise2 tn
    assert (r["s_tp"], r["s_fp"], r["s_tn"], r["s_fn"]) == (0, 1, 2, 2)
    assert r["s_precision"] == 0.0 and r["s_recall"] == 0.0 and r["s_f1"] == 0.0
    assert r["s_mae"] is None and r["s_rmse"] is None


def test_pure_noise_without_picks_has_undefined_ratios_not_zero():
    t = MetricTally()
    for _ in range(4):
        t.add(earthquake=False, p_label=None, s_label=None, detections=[], p_picks=[], s_picks=[])
    r = t.result()
    assert r["d_tn"] == r["p_tn"] == r["s_tn"] == 4 and r["n_events"] == 0
    assert r["d_fp"] == r["p_fp"] == r["s_fp"] == 0
    assert r["det_precision"] is None and r["det_recall"] is None and r["det_f1"] is None
