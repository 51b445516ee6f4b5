"""Issue 18's data sources and split: DeepDenoiser's P-only NCEDC traces, OBS .npy noise, quiet
continuous windows, the station split, P-only masking, threshold selection, ensembles and seed spreads."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from eqt_monitor.training import experiment
from eqt_monitor.training.evaluate import Scored, ensemble, score_predictions, select_thresholds
from eqt_monitor.training.generator import TrainingBatches
from eqt_monitor.training.metrics import METRIC_NAMES
from eqt_monitor.training.noise import MARGIN_S, npy_noise, quiet_starts
from eqt_monitor.training.phasenet import phasenet_windows
from eqt_monitor.training.splits import make_station_split
from eqt_monitor.training.stead import SteadDataset, station_from_name, write_stead
from test_training_train import synthetic_set

SEED_ALL = Path(__file__).resolve().parents[1] / "experiments" / "seed_all.yaml"


def test_station_names_of_both_naming_schemes():
    assert station_from_name("109C.TA_20060723155859_EV") == "TA.109C"
    assert station_from_name("NC_KCR_2001092605130217_02_EV") == "NC.KCR"
    assert station_from_name("SYN001_EV") == ""


def test_deepdenoiser_windows_are_p_only_and_cut_from_the_raw_trace(shared):
    folder = shared / "data/deepdenoiser_ncedc"
    windows = list(phasenet_windows(folder / "train.csv", folder / "train", seed=0, source="dd"))
    assert len(windows) == 99  # 100 rows, one file listed twice
    for w in windows[:10]:
        raw = np.load(folder / "train" / (w.name[: -len("_EV")] + ".npz"))["data"]
        start = 3000 - w.p
        np.testing.assert_array_equal(w.data, raw[start : start + 6000].astype(np.float32))
    assert all(w.s is None and w.coda_end is None and 500 <= w.p <= 3000 and w.source == "dd" for w in windows)
    assert windows[0].station == "BK.HELL"


def test_obs_npy_noise_windows(shared):
    noise = list(npy_noise(shared / "data/obstransformer_obs/aug_noise", source="obs"))
    assert len(noise) == 9 and all(t.category == "noise" and t.data.shape == (6000, 3) for t in noise)
    assert noise[0].name == "107.YQ_20150329020552_NO" and noise[0].station == "YQ.107"


def test_quiet_rule_rejects_windows_near_a_transient():
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (60_000, 3))
    burst = 30_000
    data[burst : burst + 500] += 50 * rng.normal(0, 1, (500, 3))
    starts = quiet_starts(data)
    margin = int(MARGIN_S * 100)
    assert len(starts) >= 3 and np.array_equal(starts, quiet_starts(data))
    assert all(s + 6000 + margin <= burst or s - margin >= burst + 500 for s in starts)
    assert len(quiet_starts(rng.normal(0, 1, (60_000, 3)))) > len(starts)


@pytest.fixture(scope="module")
def merged(shared, tmp_path_factory):
    """seed_all's data merged (all sources, about 450 traces; no model involved)."""
    (config,) = experiment.load_configs(SEED_ALL)
    work = tmp_path_factory.mktemp("seed_all")
    h5, csv_path = experiment.build_dataset(config, SEED_ALL.resolve().parent, work, 0)
    return config, SteadDataset(h5, csv_path)


@pytest.mark.slow
def test_station_split_of_every_source(merged):
    config, ds = merged
    split = experiment._split(config, ds.hdf5_path, ds.csv_path, 0)
    assert sorted(sum(split.values(), [])) == sorted(ds.names)
    stations = {part: {ds.station[n] for n in names} for part, names in split.items()}
    assert not stations["train"] & stations["test"] and not stations["train"] & stations["valid"]
    assert not stations["valid"] & stations["test"]
    for part, names in split.items():
        assert any(n.endswith("_NO") for n in names), part
    sources = set(ds.source.values())
    assert sources == {"stead50", "ncedc_phasenet", "deepdenoiser_ncedc", "obstransformer_obs", "chile_2014"}
    assert split == experiment._split(config, ds.hdf5_path, ds.csv_path, 0)
    cross = make_station_split(ds.station, ds.source, (0.8, 0.2, 0.0), 0, test_sources=("obstransformer_obs",))
    assert {ds.source[n] for n in cross["test"]} == {"obstransformer_obs"} and cross["train"] and cross["valid"]
    p_only = [n for n in split["train"] if ds.source[n] == "deepdenoiser_ncedc"][:4]
    x, y, (w_d, w_p, w_s) = TrainingBatches(ds, p_only, 4, augment=False, shuffle=False)[0]
    assert (w_d == 0).all() and (w_s == 0).all() and (w_p == 1).all() and not y[2].any() and not y[0].any()


def _scored(n: int = 4) -> list[Scored]:
    """``n`` events with a 0.5 P peak at the label and ``n`` noise windows with a detection and a 0.32 P peak."""
    out = []
    for i in range(2 * n):
        probs = np.zeros((6000, 3), dtype=np.float32)
        probs[900:1800, 0] = 0.9
        event = i < n
        probs[1000 - 20 : 1000 + 21, 1] = 0.5 if event else 0.32
        probs[1400 - 20 : 1400 + 21, 2] = 0.5 if event else 0.0
        out.append(Scored(f"T{i}", event, 1000 if event else None, 1400 if event else None, probs))
    return out


def test_thresholds_are_chosen_on_validation_and_ensembles_average():
    scored = _scored()
    assert score_predictions(scored)["p_f1"] == pytest.approx(2 / 3)  # 4 tp, 4 fp on the noise
    chosen = select_thresholds(scored)
    assert chosen == {"p_threshold": 0.35, "s_threshold": 0.05}  # the lowest above the noise's peak; S: all tie
    assert score_predictions(scored, **chosen)["p_f1"] == 1.0
    assert select_thresholds(scored[:4]) == {"p_threshold": 0.05, "s_threshold": 0.05}  # no noise: ties, lowest
    x = np.ones((2, 6000, 3), dtype=np.float32)
    both = ensemble([lambda a: a * 0.2, lambda a: a * 0.6])(x)
    np.testing.assert_allclose(both, 0.4)


def test_spread_adds_seeds_for_the_baseline_and_the_best_variants(tmp_path, monkeypatch):
    write_stead(tmp_path / "syn.hdf5", tmp_path / "syn.csv", synthetic_set(), layout="data")
    skill = {"eqt": 0.5, "a": 0.9, "b": 0.7, "c": 0.1}
    calls = []

    def fake_run(entry, run, seed, ctx):
        calls.append(run)
        label = entry["label"]
        result = {m: skill[label] + 0.01 * seed for m in METRIC_NAMES}
        return {**result, "n_events": 2, "tolerance_s": 0.5, "model": entry["model"], "weights_sha256": None}

    monkeypatch.setattr(experiment, "_run_model", fake_run)
    config = {
        "name": "spread", "out": "results", "data": [{"stead": {"hdf5": "syn.hdf5", "csv": "syn.csv"}}],
        "baseline": "eqt", "models": [{"label": k, "model": "original"} for k in skill],
        "spread": {"seeds": [1, 2], "best": 2, "models": ["eqt"]},
    }  # fmt: skip
    (tmp_path / "spread.yaml").write_text(yaml.safe_dump(config))
    table = experiment.run_experiments(tmp_path / "spread.yaml")[0].read_text()
    # the spread pass asks for the first seed again (the real _run_model finds its JSON and skips it)
    assert set(calls) == {"eqt", "a", "b", "c", "eqt_seed1", "eqt_seed2", "a_seed1", "a_seed2", "b_seed1", "b_seed2"}
    assert "## Spread over seeds (eqt: 3 seeds, a: 3 seeds, b: 3 seeds)" in table
    assert "0.910 ± 0.010 (0.9–0.92)" in table
    saved = json.loads((tmp_path / "results/compare.json").read_text())
    assert saved["seed_spread"]["a"]["p_f1"]["n"] == 3 and (tmp_path / "results/metrics.png").stat().st_size > 10_000


@pytest.mark.slow
def test_evaluate_cli_ensemble_and_tuned_thresholds(shared, original_weights, conservative_weights, tmp_path, capsys):
    from eqt_monitor.cli import main

    with SteadDataset(shared / "data/stead50/waveforms.hdf5", shared / "data/stead50/metadata.csv") as stead:
        quakes = [stead.read(n) for n in stead.names[:4]]
    noise = list(npy_noise(shared / "data/obstransformer_obs/aug_noise"))[:3]
    h5, csv_path = tmp_path / "q.hdf5", tmp_path / "q.csv"
    write_stead(h5, csv_path, quakes + noise)
    argv = ["evaluate", "--model", "original", "--weights", str(original_weights), "--hdf5", str(h5), "--csv", str(csv_path)]
    assert main([*argv, "--member", f"conservative={conservative_weights}", "--tune-csv", str(csv_path), "--json", "-"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in r["ensemble"]] == ["original", "conservative"]
    assert r["thresholds"]["chosen_on"] == str(csv_path) and 0.05 <= r["thresholds"]["p_threshold"] <= 0.9
    assert r["n_events"] == 4 and r["d_tn"] + r["d_fp"] == 3 and r["p_tp"] + r["p_fn"] == 4
    with pytest.raises(SystemExit) as usage:  # a bad member is a one-line usage error
        main([*argv, "--member", "="])
    assert usage.value.code == 2 and "--member: '=': expected MODEL or MODEL=WEIGHTS" in capsys.readouterr().err
