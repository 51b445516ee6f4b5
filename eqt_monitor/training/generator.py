"""Batches of normalised windows and EqT targets, streamed from a STEAD-format file."""
from __future__ import annotations

import keras
import numpy as np

from eqt_monitor.pipeline.windows import normalize
from eqt_monitor.training.augment import AugmentationRates, augment
from eqt_monitor.training.labels import CODA_FACTOR, make_labels
from eqt_monitor.training.stead import SteadDataset, SteadTrace


def training_pair(
    trace: SteadTrace,
    rng: np.random.Generator | None = None,
    rates: AugmentationRates | None = None,
    *,
    full: bool = True,
    coda_factor: float = CODA_FACTOR,
) -> tuple[np.ndarray, np.ndarray]:
    """One (input, target) pair: normalised (6000, 3) data and (6000, 3) [D, P, S] labels.

    Without ``rng`` the trace is used as stored (validation); with it, :func:`augment` applies.
    """
    if rng is None:
        data = trace.data
        events = [(trace.p, trace.s)] if trace.is_earthquake else []
    else:
        data, events = augment(trace, rng, rates or AugmentationRates(), full=full)
    return normalize(data), make_labels(events, coda_factor)


def output_weights(trace: SteadTrace) -> tuple[float, float, float]:
    """Loss weights of the [D, P, S] outputs for one trace: a P-only earthquake trace (no S label)
    has no S target and no detection target (the detection label ends relative to S), so both are
    masked (0); everything else counts fully."""
    if trace.is_earthquake and trace.s is None:
        return (0.0, 1.0, 0.0)
    return (1.0, 1.0, 1.0)


class TrainingBatches(keras.utils.PyDataset):
    """A Keras ``PyDataset`` of ``(x, (y_d, y_p, y_s), (w_d, w_p, w_s))`` batches, deterministic
    for a given seed; the per-sample weights (see :func:`output_weights`) mask P-only traces' S and D.

    With ``augment=True`` each batch holds ``batch_size // 2`` traces twice, as in EqT: the first
    copy only shifted (at half the rate), the second fully augmented. The trace order is shuffled
    per epoch from ``seed``; each batch draws from its own ``(seed, epoch, index)`` generator.
    """

    def __init__(
        self,
        dataset: SteadDataset,
        names: list[str],
        batch_size: int,
        *,
        augment: bool = True,
        rates: AugmentationRates | None = None,
        seed: int = 0,
        shuffle: bool = True,
        coda_factor: float = CODA_FACTOR,
    ):
        super().__init__()
        if augment and batch_size < 2:
            raise ValueError("augmented batches need batch_size >= 2")
        self.dataset = dataset
        self.names = list(names)
        self.batch_size = batch_size
        self.augment = augment
        self.rates = rates or AugmentationRates()
        self.seed = seed
        self.shuffle = shuffle
        self.coda_factor = coda_factor
        self.epoch = 0
        self._order = self._epoch_order()

    @property
    def _per_batch(self) -> int:
        return self.batch_size // 2 if self.augment else self.batch_size

    def _epoch_order(self) -> np.ndarray:
        order = np.arange(len(self.names))
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        return order

    def __len__(self) -> int:
        return max(1, -(-len(self.names) // self._per_batch))

    def on_epoch_end(self) -> None:
        """Reshuffle for the next epoch."""
        self.epoch += 1
        self._order = self._epoch_order()

    def __getitem__(self, index: int):
        picks = self._order[index * self._per_batch : (index + 1) * self._per_batch]
        traces = [t for t in (self.dataset.read(self.names[i]) for i in picks) if t is not None]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment else None
        pairs, weights = [], []
        for trace in traces:
            if rng is None:
                pairs.append(training_pair(trace, coda_factor=self.coda_factor))
            else:
                pairs.append(training_pair(trace, rng, self.rates, full=False, coda_factor=self.coda_factor))
                pairs.append(training_pair(trace, rng, self.rates, full=True, coda_factor=self.coda_factor))
            weights.extend([output_weights(trace)] * (1 if rng is None else 2))
        x = np.stack([p[0] for p in pairs])
        y = np.stack([p[1] for p in pairs])
        w = np.asarray(weights, dtype=np.float32)
        return x, (y[..., 0:1], y[..., 1:2], y[..., 2:3]), (w[:, 0:1], w[:, 1:2], w[:, 2:3])
