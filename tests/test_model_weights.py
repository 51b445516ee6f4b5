"""The published weights in our Keras 3 model: real STEAD picks, file formats agreeing, the Keras 2 pitfalls."""
from __future__ import annotations

import hashlib
import shutil

import h5py
import keras
import numpy as np
import pytest

from eqt_monitor.errors import UserError, WeightsError
from eqt_monitor.model.eqt import build_model
from eqt_monitor.model.layers import hard_sigmoid_keras2
from eqt_monitor.model.load import load_model
from eqt_monitor.model.weights import load_weights

ORIGINAL_SHA256 = "07b3ffc8065164ece44a367b145b0db66e25586d89269ec4d8c340c34966d452"
CONSERVATIVE_SHA256 = "0a9179fd40f9cda4fbc5372dd5f660bc35e69620d91dd7bdffe7f65baf7bd99b"
HALF_SECOND = 50  # samples at 100 Hz


@pytest.fixture(scope="module")
def stead50(shared):
    """The 50 STEAD traces normalised as EqT expects (demean, divide by std per channel) + P/S labels."""
    with h5py.File(shared / "data" / "stead50" / "waveforms.hdf5", "r") as f:
        group = f["earthquake/local"]
        names = sorted(group)
        x = np.stack([np.asarray(group[n], dtype=np.float64) for n in names])
        p = np.array([float(group[n].attrs["p_arrival_sample"]) for n in names])
        s = np.array([float(group[n].attrs["s_arrival_sample"]) for n in names])
    x -= x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    x /= np.where(std == 0, 1, std)
    return x.astype(np.float32), p, s


@pytest.fixture(scope="module")
def original(original_weights):
    return load_model("original", original_weights)


@pytest.fixture(scope="module")
def conservative(conservative_weights):
    return load_model("conservative", conservative_weights)


@pytest.mark.slow
def test_original_weights_pick_stead50_p_and_s_near_the_labels(original, stead50):
    x, p, s = stead50
    y = original.predict(x)
    assert y.shape == (50, 6000, 3) and y.dtype == np.float32
    p_error = np.abs(y[:, :, 1].argmax(axis=1) - p)
    s_error = np.abs(y[:, :, 2].argmax(axis=1) - s)
    assert np.mean(p_error <= HALF_SECOND) >= 0.96
    assert np.mean(s_error <= HALF_SECOND) >= 0.90
    assert np.median(p_error) <= 5  # 0.05 s
    assert y[:, :, 0].max(axis=1).min() > 0.5  # every earthquake detected
    assert original.weights_sha256 == ORIGINAL_SHA256 and original.spec.recurrent_activation == "sigmoid"


@pytest.mark.slow
def test_conservative_h5_and_keras3_file_agree(conservative, stead50, shared):
    x = stead50[0][:8]
    model = build_model(conservative.spec)
    load_weights(model, shared / "models" / "eqt_conservative_keras3.keras")
    from_keras3 = np.concatenate([np.asarray(o) for o in model(x, training=False)], axis=-1)
    np.testing.assert_allclose(from_keras3, conservative.predict(x), atol=1e-5)
    assert conservative.spec.recurrent_activation == "hard_sigmoid_keras2"


def test_hard_sigmoid_is_keras2s():
    x = np.array([-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0], dtype="float32")
    # clip(0.2 x + 0.5, 0, 1) by hand
    expected = [0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0]
    np.testing.assert_allclose(np.asarray(hard_sigmoid_keras2(x)), expected, atol=1e-7)
    assert not np.allclose(np.asarray(keras.activations.hard_sigmoid(x)), expected, atol=1e-3)


@pytest.mark.slow
def test_keras3_hard_sigmoid_would_not_reproduce_the_conservative_model(conservative, conservative_weights, stead50):
    """The pitfall is real: with Keras 3's hard_sigmoid the outputs move far beyond the 1e-5 tolerance."""
    x = stead50[0][:4]
    model = build_model(conservative.spec)
    load_weights(model, conservative_weights)
    cells = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            cells += [layer.forward_layer.cell, layer.backward_layer.cell]
        elif isinstance(layer, keras.layers.LSTM):
            cells.append(layer.cell)
    assert len(cells) == 3 * 2 + 2
    for cell in cells:
        cell.recurrent_activation = keras.activations.hard_sigmoid
    wrong = np.concatenate([np.asarray(o) for o in model(x, training=False)], axis=-1)
    assert np.abs(wrong - conservative.predict(x)).max() > 0.05


@pytest.mark.slow
def test_inference_is_deterministic_unless_mc_dropout(original, original_weights, stead50):
    x = stead50[0][:2]
    np.testing.assert_array_equal(original.predict(x), original.predict(x))
    sampled = load_model("original", original_weights, mc_dropout=True)
    first, second = sampled.predict(x), sampled.predict(x)
    assert np.abs(first - second).max() > 1e-3
    assert np.abs(first - original.predict(x)).max() > 1e-3


def test_predict_checks_shapes_and_accepts_an_empty_batch(original):
    with pytest.raises(ValueError, match=r"\(n, 6000, 3\)"):
        original.predict(np.zeros((1, 3000, 3), dtype=np.float32))
    assert original.predict(np.zeros((0, 6000, 3), dtype=np.float32)).shape == (0, 6000, 3)


@pytest.mark.slow
def test_weights_of_another_architecture_are_refused(original_weights, shared):
    with pytest.raises(WeightsError, match=r"eqt_original\.h5: no weights for layer 'bidirectional_3'"):
        load_model("conservative", original_weights)
    with pytest.raises(WeightsError, match=r"eqt_conservative\.h5: no weights for layer 'lstm_3' of model 'original'"):
        load_model("original", shared / "models" / "eqt_conservative.h5")
    with pytest.raises(WeightsError, match=r"eqt_conservative_keras3\.keras: layer 'conv1d_1' has weights of shapes "
                                           r"\[\(11, 3, 8\), \(8,\)\], model 'kernel_size_changed' expects \[\(10, 3, 8\)"):
        load_model("kernel_size_changed", shared / "models" / "eqt_conservative_keras3.keras")


def test_a_variant_without_weights_needs_allow_random(tmp_path):
    with pytest.raises(UserError, match="model 'vanilla' has no published weights"):
        load_model("vanilla")
    loaded = load_model("vanilla", allow_random=True)
    assert loaded.weights_path is None and loaded.weights_sha256 is None
    again = load_model("vanilla", allow_random=True)
    x = np.random.default_rng(0).standard_normal((1, 6000, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x), again.predict(x))  # seeded: deterministic


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_our_own_keras3_files_load_back(tmp_path, suffix):
    trained = load_model("salvation", allow_random=True, seed=7)
    path = tmp_path / f"salvation{suffix}"
    if suffix == ".keras":
        trained.model.save(path)
    else:
        trained.model.save_weights(path)
    loaded = load_model("salvation", path)
    x = np.random.default_rng(1).standard_normal((1, 6000, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x), trained.predict(x), atol=1e-6)
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_published_weights_are_found_locally_and_verified(tmp_path, monkeypatch, original_weights):
    monkeypatch.setenv("EQT_SHARED", str(tmp_path / "no_shared"))  # else ../shared/models has them
    monkeypatch.delenv("EQT_MONITOR_WEIGHTS", raising=False)
    monkeypatch.setenv("EQT_MONITOR_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match="eqt-monitor models pull original"):
        load_model("original")
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    shutil.copy(original_weights, weights_dir / "EqT_original_model.h5")  # the upstream file name
    monkeypatch.setenv("EQT_MONITOR_WEIGHTS", str(weights_dir))
    assert load_model("original").weights_path == weights_dir / "EqT_original_model.h5"
    tampered = bytearray((weights_dir / "EqT_original_model.h5").read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    (weights_dir / "EqT_original_model.h5").write_bytes(bytes(tampered))
    found = hashlib.sha256(tampered).hexdigest()
    with pytest.raises(WeightsError, match=f"expected {ORIGINAL_SHA256}, found {found}"):
        load_model("original")
