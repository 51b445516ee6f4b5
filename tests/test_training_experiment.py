"""PhaseNet NCEDC windows in STEAD form, experiment configs, and a tiny experiment end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from eqt_monitor.cli import main
from eqt_monitor.errors import ConfigError
from eqt_monitor.training.experiment import load_configs
from eqt_monitor.training.phasenet import phasenet_windows
from eqt_monitor.training.stead import write_stead
from test_training_train import synthetic_set


@pytest.fixture(scope="module")
def ncedc(shared):
    folder = shared / "data/ncedc_phasenet"
    return folder / "waveform.csv", folder / "waveform_train"


def test_ncedc_windows_carry_the_analyst_picks_at_random_offsets(ncedc):
    csv_path, npz_dir = ncedc
    windows = list(phasenet_windows(csv_path, npz_dir, seed=0))
    assert len(windows) == 154
    rows = {r.split(",")[0]: r.split(",") for r in csv_path.read_text().splitlines()[1:]}
    ps = []
    for w in windows:
        fname = w.name[: -len("_EV")] + ".npz"
        itp, its = int(rows[fname][1]), int(rows[fname][2])
        raw = np.load(npz_dir / fname)["data"]
        start = itp - w.p
        assert w.data.shape == (6000, 3) and 500 <= w.p <= 3000 and w.s - w.p == its - itp
        np.testing.assert_array_equal(w.data, raw[start : start + 6000].astype(np.float32))
        ps.append(w.p)
        if rows[fname][3] == "EHZ":  # single-component traces: no SNR on the empty channels
            assert np.isnan(w.snr_db[:2]).all() and np.isfinite(w.snr_db[2])
    assert len(set(ps)) > 100  # offsets really vary
    again = [w.p for w in phasenet_windows(csv_path, npz_dir, seed=0)]
    other = [w.p for w in phasenet_windows(csv_path, npz_dir, seed=1)]
    assert again == ps and other != ps


def test_shipped_configs_parse(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "experiments"
    assert [c["name"] for c in load_configs(root / "seed_stead.yaml")] == ["steadmini", "merged", "stead_micro"]
    (here,) = load_configs(root / "ncedc_stead50.yaml")
    assert here["baseline"] == "original" and {m["label"] for m in here["models"]} >= {"original", "original_finetuned"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "x", "out": "o", "data": []}, "missing field 'models'"),
        ({"name": "x", "out": "o", "data": [], "models": ["gru", "gru"]}, "unique 'label'"),
        ({"name": "x", "out": "o", "data": [], "models": ["gru"], "baseline": "original"}, "'baseline' names no model"),
    ],
)
def test_bad_configs_name_the_file_and_field(tmp_path, config, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=message) as err:
        load_configs(path)
    assert "bad.yaml" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_a_tiny_experiment_writes_the_table(tmp_path, original_weights, capsys):
    write_stead(tmp_path / "syn.hdf5", tmp_path / "syn.csv", synthetic_set(), layout="data")
    config = {
        "name": "tiny",
        "out": "results",
        "work": "work",
        "seed": 1,
        "split": [0.75, 0.125, 0.125],
        "data": [{"stead": {"hdf5": "syn.hdf5", "csv": "syn.csv"}}],
        "train": {"epochs": 1, "batch_size": 4},
        "baseline": "original",
        "models": [{"label": "original", "model": "original", "weights": str(original_weights)}, "vanilla"],
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    assert main(["experiment", "--config", str(tmp_path / "tiny.yaml")]) == 0
    printed = capsys.readouterr().out
    table = (tmp_path / "results/compare.md").read_text()
    assert "| metric | original (baseline) | vanilla |" in table and "experiment --config" in table
    assert "tiny: the 2 test-split traces of stead" in table and table in printed
    split = json.loads((tmp_path / "results/split.json").read_text())
    assert len(split["test"]) == 2 and (tmp_path / "work/vanilla/vanilla.keras").exists()
    for label in ("original", "vanilla"):
        result = json.loads((tmp_path / f"results/{label}.json").read_text())
        assert result["model"] == label and result["d_tp"] + result["d_fn"] + result["d_fp"] + result["d_tn"] == 2
    assert not (tmp_path / "results/data").exists()
