"""``evaluate`` with the published original weights on real stead50 traces and on white noise."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eqt_monitor.cli import main
from eqt_monitor.training.evaluate import score_dataset
from eqt_monitor.training.metrics import METRIC_NAMES
from eqt_monitor.training.stead import NOISE, SteadDataset, SteadTrace, write_stead

ORIGINAL_SHA256 = "07b3ffc8065164ece44a367b145b0db66e25586d89269ec4d8c340c34966d452"


@pytest.fixture(scope="module")
def original(original_weights):
    from eqt_monitor.model.load import load_model

    return load_model("original", original_weights)


def white_noise(n: int, seed: int = 0) -> list[SteadTrace]:
    """Gaussian white noise windows, labelled as STEAD noise traces."""
    rng = np.random.default_rng(seed)
    return [
        SteadTrace(name=f"WN{i:03d}_NO", data=rng.normal(0, 1000, (6000, 3)).astype(np.float32), category=NOISE)
        for i in range(n)
    ]


@pytest.mark.slow
def test_published_original_meets_the_acceptance_on_stead50(shared, original_weights, tmp_path, capsys):
    out = tmp_path / "orig.json"
    argv = [
        "evaluate", "--model", "original", "--weights", str(original_weights),
        "--hdf5", str(shared / "data/stead50/waveforms.hdf5"), "--csv", str(shared / "data/stead50/metadata.csv"),
        "--json", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "pick tolerance 0.5 s" in report and ORIGINAL_SHA256 in report
    result = json.loads(out.read_text())
    assert set(result) == set(METRIC_NAMES) | {"n_events", "tolerance_s", "model", "weights_sha256"}
    assert result["n_events"] == 50 and result["tolerance_s"] == 0.5 and result["model"] == "original"
    assert result["weights_sha256"] == ORIGINAL_SHA256
    assert result["p_recall"] >= 0.96 and result["s_recall"] >= 0.90 and result["p_mae"] <= 0.05
    assert result["d_tp"] + result["d_fn"] == 50 and result["d_tn"] == result["d_fp"] == 0
    assert result["p_tp"] + result["p_fn"] == 50 and result["s_tp"] + result["s_fn"] == 50
    assert 0 <= result["p_rmse"] - result["p_mae"] and result["s_rmse"] >= result["s_mae"] > 0


def noise_and_quakes(shared, tmp_path, layout: str) -> SteadDataset:
    """12 white-noise windows and stead50's first 4 quakes, written in the STEAD ``layout``."""
    with SteadDataset(shared / "data/stead50/waveforms.hdf5", shared / "data/stead50/metadata.csv") as stead:
        quakes = [stead.read(n) for n in stead.names[:4]]
    h5, csv_path = tmp_path / f"{layout}.hdf5", tmp_path / f"{layout}.csv"
    write_stead(h5, csv_path, white_noise(12) + quakes, layout=layout)
    return SteadDataset(h5, csv_path)


def test_white_noise_gives_no_detection_in_either_layout(tmp_path, shared, conservative_weights):
    from eqt_monitor.model.load import load_model

    model = load_model("conservative", conservative_weights)
    for layout in ("data", "old"):
        with noise_and_quakes(shared, tmp_path, layout) as dataset:
            r = score_dataset(model.predict, dataset, batch_size=8)
        assert r["n_events"] == 4 and r["d_tp"] == 4
        assert (r["d_fp"], r["p_fp"], r["s_fp"]) == (0, 0, 0)
        assert (r["d_tn"], r["p_tn"], r["s_tn"]) == (12, 12, 12)
        assert r["det_precision"] == 1.0


def test_original_detector_fires_on_white_noise_but_picks_nothing_at_its_recommended_thresholds(
    original, tmp_path, shared
):
    """The published original model's detector reaches 0.42-0.85 on every white-noise window (the
    Keras 2 reference gives the same, see test_model_reference.py and DESIGN.md), so "no detection
    on white noise" holds only for the conservative model. At the thresholds EqT's author advises
    for the original model (detection 0.5, P and S 0.3) it still makes no P or S pick on noise."""
    with noise_and_quakes(shared, tmp_path, "data") as dataset:
        r = score_dataset(original.predict, dataset, batch_size=8,
                          detection_threshold=0.5, p_threshold=0.3, s_threshold=0.3)
    assert r["n_events"] == 4 and r["d_tp"] == r["p_tp"] == r["s_tp"] == 4
    assert r["d_fp"] >= 6  # the documented property, not a wish
    assert (r["p_fp"], r["s_fp"]) == (0, 0) and (r["p_tn"], r["s_tn"]) == (12, 12)


def test_thresholds_are_flags(original_weights, tmp_path, shared, capsys):
    with SteadDataset(shared / "data/stead50/waveforms.hdf5", shared / "data/stead50/metadata.csv") as stead:
        quakes = [stead.read(name) for name in stead.names[:3]]
    h5, csv_path = tmp_path / "q.hdf5", tmp_path / "q.csv"
    write_stead(h5, csv_path, quakes)
    argv = ["evaluate", "--model", "original", "--weights", str(original_weights), "--hdf5", str(h5), "--csv", str(csv_path)]
    assert main([*argv, "--detection-threshold", "1.01", "--p-threshold", "1.01", "--s-threshold", "1.01", "--json", "-"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["d_tp"], r["d_fn"], r["p_fn"], r["s_fn"], r["p_tp"]) == (0, 3, 3, 3, 0)
    assert r["det_recall"] == 0.0 and r["p_mae"] is None


def test_progress_bar_goes_to_stderr(original, tmp_path, capsys):
    h5, csv_path = tmp_path / "n.hdf5", tmp_path / "n.csv"
    write_stead(h5, csv_path, white_noise(3, seed=1))
    with SteadDataset(h5, csv_path) as dataset:
        score_dataset(original.predict, dataset, progress=True)
    captured = capsys.readouterr()
    assert "evaluate" in captured.err and "3/3" in captured.err and captured.out == ""


def test_missing_files_are_one_line_errors(original_weights, tmp_path, capsys):
    argv = ["evaluate", "--model", "original", "--weights", str(original_weights),
            "--hdf5", str(tmp_path / "none.hdf5"), "--csv", str(tmp_path / "none.csv")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "none.hdf5: no such file" in err and err.count("\n") == 1
