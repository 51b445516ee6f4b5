"""``experiments/seed_all.yaml`` shrunk to 2 models × 1 epoch on a few traces of every source, end to end:
the station split, noise in the test split, P-only traces, the table, the plot, and resuming."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from eqt_monitor.cli import main
from eqt_monitor.training.stead import SteadDataset

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "seed_all.yaml"
LIMITS = {"stead50": 2, "ncedc_phasenet": 6, "deepdenoiser_ncedc": 4, "obstransformer_obs": 8}


def shrunk(shared: Path, tmp_path: Path) -> Path:
    """The shipped config with absolute data paths, a few traces per source, 2 models, 1 epoch."""
    config = yaml.safe_load(CONFIG.read_text())
    for entry in config["data"]:
        (kind, opts), = entry.items()
        for key in ("hdf5", "csv", "npz_dir", "dir"):
            if key in opts:
                opts[key] = str(shared / Path(opts[key]).relative_to("../../shared"))
        if kind == "continuous_noise":
            opts["files"] = [str(shared / Path(f).relative_to("../../shared")) for f in opts["files"]]
            opts.update(start="2014-05-01T00:00:00", end="2014-05-01T00:20:00", max_per_station=3)
        else:
            opts["max_traces"] = LIMITS.get(opts["source"], 3)
            if kind == "npy_noise":
                opts["max_traces"] = 3
    # one batch each for train and valid, run eagerly: tracing the train step costs more than these few steps
    config.update(out="results", work="work", train={"epochs": 1, "batch_size": 16, "patience": 1, "run_eagerly": True})
    config["split"]["fractions"] = [0.3, 0.2, 0.5]  # few training traces: the CPU time is in training
    config["models"] = [{"label": "eqt", "model": "original"}, "gru"]
    del config["spread"]  # the seed spread is tested without training, below
    path = tmp_path / "seed_all.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_seed_all_shrunk_writes_table_plot_and_resumes(shared, tmp_path, capsys):
    path = shrunk(shared, tmp_path)
    assert main(["experiment", "--config", str(path)]) == 0
    out = tmp_path / "results"
    table = (out / "compare.md").read_text()
    assert "| metric | eqt (baseline) | gru |" in table and "| better than baseline | — |" in table
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"

    split = json.loads((out / "split.json").read_text())
    ds = SteadDataset(tmp_path / "work/data/waveforms.hdf5", tmp_path / "work/data/metadata.csv")
    stations = {part: {ds.station[n] for n in names} for part, names in split.items()}
    assert not stations["train"] & stations["test"] and not stations["valid"] & stations["test"]
    test_noise = [n for n in split["test"] if n.endswith("_NO")]
    assert test_noise and all(any(n.endswith("_NO") for n in split[p]) for p in split)
    assert {ds.source[n] for n in ds.names} == {*LIMITS, "chile_2014"}
    p_only = [n for n in ds.names if ds.source[n] == "deepdenoiser_ncedc"]
    assert p_only and all(ds.read(n).s is None and ds.read(n).p is not None for n in p_only)

    eqt = json.loads((out / "eqt.json").read_text())
    assert eqt["d_tn"] + eqt["d_fp"] == len(test_noise)  # the noise windows are scored
    n_s = sum(1 for n in split["test"] if not n.endswith("_NO") and ds.read(n).s is not None)
    assert eqt["s_tp"] + eqt["s_fn"] == n_s < eqt["n_events"]  # P-only traces are not S events

    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json") if p.name != "compare.json"}
    started = time.monotonic()
    assert main(["experiment", "--config", str(path)]) == 0  # resume: every model is done
    assert time.monotonic() - started < 20
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json") if p.name != "compare.json"} == stamps
    assert (out / "compare.md").read_text() == table
