"""The fast inference path (polyphase decoders, XLA on TensorFlow) gives the reference path's
outputs on real windows (preprocessing against ObsPy: tests/test_windows.py)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from eqt_monitor.inference import MIN_XLA_BATCH
from eqt_monitor.model.fast import UpsampleConv1D, inference_model
from eqt_monitor.model.load import load_model
from eqt_monitor.pipeline.windows import preprocess

TOLERANCE = 1e-4


def chile_windows(archive: dict, station: str, n: int) -> np.ndarray:
    """``n`` raw [E, N, Z] windows of ``station`` at a 3000-sample step from chile_2014's first minutes."""
    data = np.stack([archive[f"CX.{station}..HH{c}"].data for c in "ENZ"], axis=1).astype(np.float32)
    return np.stack([data[i * 3000:i * 3000 + 6000] for i in range(n)])


@pytest.fixture(scope="module")
def windows(archive: dict) -> np.ndarray:
    half = MIN_XLA_BATCH // 2  # one batch that takes the XLA path
    return np.concatenate([chile_windows(archive, "PB01", half), chile_windows(archive, "PB02", half)])


@pytest.mark.slow
def test_fast_predict_equals_the_reference_model_on_real_windows(original_weights, windows):
    loaded = load_model("original", original_weights)
    batch = preprocess(windows)
    reference = loaded.predict_reference(batch)
    assert reference.max() > 0.3  # real signal reaches the detector, not only near-zero outputs
    np.testing.assert_allclose(loaded.predict(batch), reference, rtol=0, atol=TOLERANCE)  # XLA
    np.testing.assert_allclose(loaded.predict(batch[:4]), reference[:4], rtol=0, atol=TOLERANCE)  # small: no XLA


@pytest.mark.parametrize("kernel, length", [(11, 47), (3, 8), (7, 375), (4, 10), (1, 5)])
def test_upsample_conv_equals_upsampling_then_same_conv(kernel, length):
    rng = np.random.default_rng(kernel)
    conv = keras.layers.Conv1D(5, kernel, padding="same", activation="relu")
    conv.build((None, None, 3))
    conv.set_weights([rng.normal(size=(kernel, 3, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)])
    x = rng.normal(size=(2, length, 3)).astype(np.float32)
    expected = np.asarray(conv(keras.layers.UpSampling1D(2)(x)))
    got = np.asarray(UpsampleConv1D.from_conv(conv, name="fused")(x))
    assert got.shape == (2, 2 * length, 5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_inference_model_fuses_every_uncropped_upsampling_of_the_decoders(original_weights):
    loaded = load_model("original", original_weights)
    model = loaded.model  # a sub-model from an inner tensor adds nodes to the shared layers: still found
    keras.Model(model.get_layer("layer_normalization_4").output, model.get_layer("detector").output)
    fast = inference_model(model)
    upsamplings = [layer for layer in loaded.model.layers if isinstance(layer, keras.layers.UpSampling1D)]
    fused = [layer for layer in fast.layers if isinstance(layer, UpsampleConv1D)]
    remaining = [layer for layer in fast.layers if isinstance(layer, keras.layers.UpSampling1D)]
    assert len(upsamplings) == 21  # 3 decoders x 7 stages
    assert len(remaining) == 3  # the stage followed by Cropping1D (752 -> 750) in each decoder
    assert len(fused) == 18
    x = np.random.default_rng(0).normal(size=(2, 6000, 3)).astype(np.float32)
    expected = np.concatenate([np.asarray(o) for o in loaded.model.predict_on_batch(x)], axis=-1)
    got = np.concatenate([np.asarray(o) for o in fast.predict_on_batch(x)], axis=-1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)

