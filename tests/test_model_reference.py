"""Our Keras 3 port against an independent Keras 2 implementation of the published models.

``tests/data/<model>_reference.npz`` were written by ``tests/reference/keras2_reference.py``
(tf_keras, each model rebuilt from its HDF5 file's own saved config, custom layers written from
EQTransformer's ``EqT_utils.py``; nothing from ``eqt_monitor``). They hold the seed and stead50
trace names of the inputs, a checksum of each normalised input and the reference [D, P, S].
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from eqt_monitor.pipeline.windows import normalize

DATA = Path(__file__).parent / "data"
TOLERANCE = 2e-5  # measured: <= 4e-6 on 32 windows; 1e-4 would miss dropping the attention epsilon


def reference_inputs(ref, shared: Path) -> np.ndarray:
    """The normalised windows the reference was run on: white noise from ``default_rng(seed)``
    (``normal(0, 1000)``, drawn in sequence), then the named stead50 traces."""
    rng = np.random.default_rng(int(ref["seed"]))
    windows = [rng.normal(0, 1000, (6000, 3)).astype(np.float32) for _ in range(int(ref["noise"]))]
    with h5py.File(shared / "data" / "stead50" / "waveforms.hdf5", "r") as f:
        windows += [np.asarray(f[f"earthquake/local/{name}"], dtype=np.float32) for name in ref["stead_names"]]
    return normalize(np.stack(windows))


@pytest.mark.parametrize("name", ["original", "conservative"])
def test_port_equals_the_keras2_reference_on_noise_and_stead50(name, shared):
    from eqt_monitor.model.load import load_model

    ref = np.load(DATA / f"{name}_reference.npz")
    assert str(ref["model"]) == name and str(ref["attention"]) == "eqt_utils"
    x = reference_inputs(ref, shared)
    np.testing.assert_allclose(np.abs(x.astype(np.float64)).sum(axis=1), ref["input_sums"], rtol=1e-9)
    ours = load_model(name, shared / "models" / f"eqt_{name}.h5").predict(x)
    worst = np.abs(ours - ref["outputs"]).max(axis=(0, 1))
    assert (worst <= TOLERANCE).all(), f"max |ours - reference| for D, P, S: {worst}"
    # the windows are informative: both models detect the quakes; only the original fires on noise
    noise = int(ref["noise"])
    assert (ref["outputs"][noise:, :, 0].max(axis=1) > 0.9).all()
    assert (ref["outputs"][:noise, :, 0].max(axis=1) > 0.4).all() == (name == "original")
