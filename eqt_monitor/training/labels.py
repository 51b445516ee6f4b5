"""EqT's training targets for one window: a detection box and Gaussian P and S labels."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from eqt_monitor.records import WINDOW_SAMPLES

SIGMA = 10  # samples, the width of the Gaussian phase labels
HALF_WIDTH = 20  # samples either side of the pick that carry a phase label
CODA_FACTOR = 1.4  # detection ends at S + CODA_FACTOR * (S - P)

Event = tuple[int | None, int | None]  # (P sample, S sample)


def detection_end(p: int, s: int, coda_factor: float = CODA_FACTOR) -> int:
    """Last labelled sample of an event's detection: ``S + coda_factor·(S − P)``, clipped to the window."""
    return min(int(s + coda_factor * (s - p)), WINDOW_SAMPLES - 1)


def _gaussian(target: np.ndarray, centre: int) -> None:
    lo, hi = max(centre - HALF_WIDTH, 0), min(centre + HALF_WIDTH, WINDOW_SAMPLES - 1)
    idx = np.arange(lo, hi + 1)
    np.maximum(target[lo : hi + 1], np.exp(-((idx - centre) ** 2) / (2 * SIGMA**2)), out=target[lo : hi + 1])


def make_labels(events: Iterable[Event], coda_factor: float = CODA_FACTOR) -> np.ndarray:
    """(6000, 3) float32 targets [detection, P, S] for the events in a window (none for noise).

    Detection is 1 on [P, S + coda_factor·(S − P)] for events with both phases; P and S are
    Gaussians (σ = 10 samples) over ±20 samples of each pick inside the window.
    """
    y = np.zeros((WINDOW_SAMPLES, 3), dtype=np.float32)
    for p, s in events:
        if p is not None and s is not None and s > p:
            y[p : detection_end(p, s, coda_factor) + 1, 0] = 1.0
        for column, sample in ((1, p), (2, s)):
            if sample is not None and 0 <= sample < WINDOW_SAMPLES:
                _gaussian(y[:, column], sample)
    return y
