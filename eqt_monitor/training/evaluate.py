"""Score a model on a labelled STEAD-format set: predict each window, pick it, tally the 25 metrics."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eqt_monitor.pipeline.picker import pick_window
from eqt_monitor.pipeline.windows import normalize
from eqt_monitor.training.metrics import DETECTION_THRESHOLD, P_THRESHOLD, S_THRESHOLD, TOLERANCE_S, MetricTally
from eqt_monitor.training.stead import SteadDataset

Predict = Callable[[np.ndarray], np.ndarray]  # (n, 6000, 3) float32 -> (n, 6000, 3) [D, P, S]


def score_dataset(
    predict: Predict,
    dataset: SteadDataset,
    *,
    detection_threshold: float = DETECTION_THRESHOLD,
    p_threshold: float = P_THRESHOLD,
    s_threshold: float = S_THRESHOLD,
    tolerance_s: float = TOLERANCE_S,
    batch_size: int = 64,
    progress: bool | None = None,
) -> dict:
    """The 25 metrics plus ``n_events`` for ``predict`` on every readable trace of ``dataset``.

    Windows are demeaned and std-normalised per channel (EqT's tester; no filtering), predicted
    in batches, and picked with the project's picker. ``progress`` shows a tqdm bar on stderr
    (``None``: only on a terminal).
    """
    tally = MetricTally(tolerance_s)
    bar = tqdm(total=len(dataset), unit="trace", desc="evaluate", file=sys.stderr, disable=None if progress is None else not progress)
    traces = iter(dataset)
    with bar:
        while batch := [t for _, t in zip(range(batch_size), traces)]:
            out = np.asarray(predict(normalize(np.stack([t.data for t in batch]))))
            for trace, probs in zip(batch, out):
                picks = pick_window(
                    probs[:, 0],
                    probs[:, 1],
                    probs[:, 2],
                    det_threshold=detection_threshold,
                    p_threshold=p_threshold,
                    s_threshold=s_threshold,
                )
                tally.add(
                    earthquake=trace.is_earthquake,
                    p_label=trace.p,
                    s_label=trace.s,
                    detections=picks.detections,
                    p_picks=[pick.sample for pick in picks.p_picks],
                    s_picks=[pick.sample for pick in picks.s_picks],
                )
            bar.update(len(batch))
    return tally.result()


def evaluate(
    model: str,
    hdf5: str | Path,
    csv_path: str | Path,
    *,
    weights: str | Path | None = None,
    **options,
) -> dict:
    """Load ``model`` (with ``weights``), score it on the STEAD-format set, and return the report:
    the 25 metrics, ``n_events``, ``tolerance_s``, ``model`` and ``weights_sha256``."""
    from eqt_monitor.model.load import load_model

    loaded = load_model(model, weights)
    with SteadDataset(hdf5, csv_path) as dataset:
        result = score_dataset(loaded.predict, dataset, **options)
    result["tolerance_s"] = options.get("tolerance_s", TOLERANCE_S)
    result["model"] = model
    result["weights_sha256"] = loaded.weights_sha256
    return result
