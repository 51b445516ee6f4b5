"""``train`` → ``evaluate`` → ``compare`` on a tiny synthetic STEAD-format set made here."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eqt_monitor.cli import main
from eqt_monitor.training.splits import load_split
from eqt_monitor.training.stead import EARTHQUAKE, NOISE, SteadDataset, SteadTrace, write_stead
from eqt_monitor.training.trainer import eqt_learning_rate


def _wavelet(n: int, freq: float, decay: float, rng) -> np.ndarray:
    t = np.arange(n) / 100.0
    return np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t / decay)


def synthetic_set(n_events: int = 12, n_noise: int = 4, seed: int = 0) -> list[SteadTrace]:
    """Noise plus, for events, a P wavelet (strongest on Z) and a larger S wavelet (on E, N)."""
    rng = np.random.default_rng(seed)
    traces = []
    for i in range(n_events + n_noise):
        data = rng.normal(0, 1, (6000, 3))
        if i < n_events:
            p = int(rng.integers(500, 1500))
            s = p + int(rng.integers(200, 800))
            for sample, gains, amp, freq in ((p, (0.3, 0.3, 1.0), 8, 6.0), (s, (1.0, 1.0, 0.4), 16, 3.0)):
                length = 6000 - sample
                for c, gain in enumerate(gains):
                    data[sample:, c] += amp * gain * _wavelet(length, freq, 3.0, rng)
            coda = min(int(s + 1.4 * (s - p)), 5999)
            traces.append(SteadTrace(f"SYN{i:03d}_EV", data.astype(np.float32), EARTHQUAKE, p, s, coda, np.full(3, 25.0)))
        else:
            traces.append(SteadTrace(f"SYN{i:03d}_NO", data.astype(np.float32), NOISE))
    return traces


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    h5, csv_path = folder / "waveforms.hdf5", folder / "metadata.csv"
    write_stead(h5, csv_path, synthetic_set(), layout="old")
    return h5, csv_path


def test_learning_rate_follows_eqt_steps():
    assert [eqt_learning_rate(e) for e in (0, 20, 21, 41, 61, 91)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5, 1e-6, 5e-7])


@pytest.mark.slow
def test_two_variants_train_resume_evaluate_and_compare(synthetic, tmp_path, capsys, monkeypatch):
    from eqt_monitor.commands.models import _weights_status

    monkeypatch.setenv("EQT_MONITOR_CACHE", str(tmp_path / "cache"))
    h5, csv_path = synthetic
    common = ["--hdf5", str(h5), "--csv", str(csv_path), "--batch-size", "4", "--split", "0.75", "0.125", "0.125", "--seed", "3"]
    results = []
    for variant in ("vanilla", "bc"):
        out = tmp_path / variant
        if variant == "vanilla":  # one epoch, then a re-run resumes at the second
            assert main(["train", "--model", variant, "--out", str(out), "--epochs", "1", *common]) == 0
            assert len(json.loads((out / "history.json").read_text())["loss"]) == 1
        assert main(["train", "--model", variant, "--out", str(out), "--epochs", "2", *common]) == 0
        history = json.loads((out / "history.json").read_text())
        assert len(history["loss"]) == 2 and len(history["val_loss"]) == 2
        assert history["loss"][1] < history["loss"][0], f"{variant}: loss did not fall: {history['loss']}"
        assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
        model_file = out / f"{variant}.keras"
        sha = (out / f"{variant}.keras.sha256").read_text().split()[0]
        import hashlib

        assert sha == hashlib.sha256(model_file.read_bytes()).hexdigest()
        assert f"name: {variant}" in (out / f"{variant}.yaml").read_text()
        assert _weights_status(variant, None) == f"trained (sha256 {sha[:12]}…) at {model_file.resolve()}"

        split = load_split(out / "split.json")
        assert sorted(sum(split.values(), [])) == sorted(SteadDataset(h5, csv_path).names)
        test_csv = tmp_path / f"{variant}_test.csv"
        from eqt_monitor.training.splits import split_csv

        split_csv(csv_path, split["test"], test_csv)
        result = tmp_path / f"{variant}.json"
        argv = ["evaluate", "--model", variant, "--weights", str(model_file), "--hdf5", str(h5), "--csv", str(test_csv), "--json", str(result)]
        assert main(argv) == 0
        scored = json.loads(result.read_text())
        assert scored["weights_sha256"] == sha and scored["d_tp"] + scored["d_fn"] + scored["d_fp"] + scored["d_tn"] == len(split["test"])
        results.append(result)
    assert load_split(tmp_path / "vanilla" / "split.json") == load_split(tmp_path / "bc" / "split.json")
    (tmp_path / "bc" / "bc.keras").write_bytes(b"tampered")
    assert "CHANGED since training" in _weights_status("bc", None)
    capsys.readouterr()
    assert main(["compare", *map(str, results), "--baseline", "vanilla", "--dataset", "synthetic"]) == 0
    table = capsys.readouterr().out
    assert "| metric | vanilla (baseline) | bc |" in table and "of 25 |" in table and "synthetic" in table
