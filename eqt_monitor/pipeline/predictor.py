"""Batched model calls over windows from all stations, and max-stacking of the outputs.

The model is any callable ``predict_fn(batch) -> outputs`` taking ``(n, 6000, 3)`` float32
normalised windows [E, N, Z] and returning ``(n, 6000, 3)`` float32 [D, P, S] (as
``eqt_monitor.model.load.LoadedModel.predict``).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from eqt_monitor.pipeline.windows import preprocess
from eqt_monitor.records import WINDOW_SAMPLES

PredictFn = Callable[[np.ndarray], np.ndarray]

BLINDING = 500  # samples ignored at each window edge, except at the true ends of a stretch


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The padded sizes of the model calls for ``n`` windows: full batches of ``batch_size``, then
    the remainder rounded up to a power of two (capped at ``batch_size``). Only a handful of
    distinct shapes ever reach the model, so a compiled graph is not retraced for every count."""
    sizes = [batch_size] * (n // batch_size)
    rest = n % batch_size
    if rest:
        sizes.append(min(batch_size, 1 << (rest - 1).bit_length()))
    return sizes


class Predictor:
    """Runs ``predict_fn`` on raw windows in batches and counts what it did."""

    def __init__(self, predict_fn: PredictFn, batch_size: int = 64, outputs: int = 3):
        """``outputs``: 3 ([D, P, S]) or 6 (Monte-Carlo means, then their stds)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.predict_fn = predict_fn
        self.batch_size = batch_size
        self.outputs = outputs
        self.windows = 0  # windows predicted so far (padding not counted)
        self.calls = 0  # model calls so far

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Raw windows ``(n, 6000, 3)`` (counts) → model output ``(n, 6000, 3)`` float32 [D, P, S].

        Each window is preprocessed on its own (``windows.preprocess``); batches are zero-padded to
        the sizes of ``batch_sizes`` and the padding's output is dropped."""
        n = len(windows)
        out = np.empty((n, WINDOW_SAMPLES, self.outputs), dtype=np.float32)
        done = 0
        for size in batch_sizes(n, self.batch_size):
            take = min(size, n - done)
            batch = np.zeros((size, WINDOW_SAMPLES, 3), dtype=np.float32)
            batch[:take] = preprocess(windows[done:done + take])
            result = np.asarray(self.predict_fn(batch))
            if result.shape != (size, WINDOW_SAMPLES, self.outputs):
                raise ValueError(f"model returned shape {result.shape} for a batch of shape {batch.shape}; "
                                 f"expected {(size, WINDOW_SAMPLES, self.outputs)} [D, P, S]")
            out[done:done + take] = result[:take]
            done += take
            self.calls += 1
        self.windows += n
        return out


def stack(target: np.ndarray, offset: int, output: np.ndarray, *, head: int, tail: int) -> None:
    """Max-stack one window's output into ``target`` in place.

    ``target`` is ``(m, 3)``; ``output`` (``(k, 3)``, a window's [D, P, S], possibly cut short for a
    zero-padded window) starts at ``target[offset]``. The first ``head`` and last ``tail`` samples
    of ``output`` are blinded (not stacked): ``BLINDING`` inside the data, 0 at a stretch's end."""
    lo, hi = head, len(output) - tail
    if lo >= hi:
        return
    if offset + lo < 0 or offset + hi > len(target):
        raise ValueError(f"window samples [{offset + lo}, {offset + hi}) fall outside the stacking buffer "
                         f"of {len(target)} samples")
    span = target[offset + lo:offset + hi]
    np.maximum(span, output[lo:hi], out=span)
