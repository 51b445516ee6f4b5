"""Batching windows into model calls, and max-stacking with edge blinding."""
from __future__ import annotations

import numpy as np
import pytest

from eqt_monitor.pipeline.predictor import BLINDING, Predictor, batch_sizes, stack
from eqt_monitor.pipeline.windows import preprocess


def test_batch_sizes_are_full_batches_then_a_power_of_two():
    assert batch_sizes(70, 32) == [32, 32, 8]
    assert batch_sizes(64, 64) == [64]
    assert batch_sizes(1, 64) == [1]
    assert batch_sizes(33, 64) == [64]
    assert batch_sizes(5, 6) == [6]
    assert batch_sizes(0, 64) == []


class Recorder:
    """A deterministic stand-in model: [D, P, S] = squashed input channels; records batch shapes."""

    def __init__(self):
        self.shapes = []

    def __call__(self, batch):
        self.shapes.append(batch.shape)
        return (1.0 / (1.0 + np.exp(-batch))).astype(np.float32)


def test_predictor_batches_pads_and_keeps_each_windows_output():
    rng = np.random.default_rng(0)
    windows = rng.normal(0, 50, (70, 6000, 3)).astype(np.float32)
    model = Recorder()
    predictor = Predictor(model, batch_size=32)
    out = predictor.predict(windows)
    assert model.shapes == [(32, 6000, 3), (32, 6000, 3), (8, 6000, 3)]
    assert (predictor.windows, predictor.calls) == (70, 3)
    expected = 1.0 / (1.0 + np.exp(-preprocess(windows)))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_predictor_rejects_a_model_output_of_the_wrong_shape():
    predictor = Predictor(lambda batch: batch[:, :, :1], batch_size=4)
    with pytest.raises(ValueError, match="D, P, S"):
        predictor.predict(np.ones((2, 6000, 3), np.float32))


def test_stack_takes_the_maximum_outside_the_blinded_edges():
    target = np.zeros((9000, 3), np.float32)
    first = np.full((6000, 3), 0.5, np.float32)
    second = np.full((6000, 3), 0.3, np.float32)
    second[4000] = 0.9
    stack(target, 0, first, head=0, tail=BLINDING)
    stack(target, 3000, second, head=BLINDING, tail=0)
    # first window: head at a stretch start (kept), tail blinded; second: head blinded, tail kept
    expected = np.full(9000, 0.5, np.float32)
    expected[5500:] = 0.3
    expected[7000] = 0.9
    assert np.array_equal(target[:, 0], expected)

def test_stack_of_a_blinded_window_changes_only_its_middle():
    target = np.zeros((6000, 3), np.float32)
    stack(target, 0, np.ones((6000, 3), np.float32), head=BLINDING, tail=BLINDING)
    assert not target[:BLINDING].any() and not target[-BLINDING:].any()
    assert (target[BLINDING:-BLINDING] == 1.0).all()


def test_stack_refuses_samples_outside_the_buffer():
    with pytest.raises(ValueError, match="outside"):
        stack(np.zeros((5000, 3), np.float32), 0, np.ones((6000, 3), np.float32), head=0, tail=0)
