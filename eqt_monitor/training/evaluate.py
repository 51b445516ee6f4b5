"""Score a model on a labelled STEAD-format set: predict each window, pick it, tally the 25 metrics."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eqt_monitor.pipeline.picker import pick_window
from eqt_monitor.pipeline.windows import normalize
from eqt_monitor.training.metrics import DETECTION_THRESHOLD, P_THRESHOLD, S_THRESHOLD, TOLERANCE_S, MetricTally
from eqt_monitor.training.stead import SteadDataset

Predict = Callable[[np.ndarray], np.ndarray]  # (n, 6000, 3) float32 -> (n, 6000, 3) [D, P, S]


@dataclass
class Scored:
    """One trace's labels and the model's (6000, 3) [D, P, S] probabilities for it."""

    name: str
    earthquake: bool
    p: int | None
    s: int | None
    probs: np.ndarray


def predict_dataset(predict: Predict, dataset: SteadDataset, *, batch_size: int = 64, progress: bool | None = None) -> list[Scored]:
    """``predict`` on every readable trace (demeaned, std-normalised per channel as in EqT's tester;
    no filter), in batches; ``progress`` shows a tqdm bar on stderr (``None``: only on a terminal)."""
    out: list[Scored] = []
    bar = tqdm(total=len(dataset), unit="trace", desc="evaluate", file=sys.stderr, disable=None if progress is None else not progress)
    traces = iter(dataset)
    with bar:
        while batch := [t for _, t in zip(range(batch_size), traces)]:
            probs = np.asarray(predict(normalize(np.stack([t.data for t in batch]))))
            out.extend(Scored(t.name, t.is_earthquake, t.p, t.s, pr) for t, pr in zip(batch, probs))
            bar.update(len(batch))
    return out


def score_predictions(
    scored: list[Scored],
    *,
    detection_threshold: float = DETECTION_THRESHOLD,
    p_threshold: float = P_THRESHOLD,
    s_threshold: float = S_THRESHOLD,
    tolerance_s: float = TOLERANCE_S,
) -> dict:
    """The 25 metrics plus ``n_events`` of predictions picked with the project's picker at these thresholds."""
    tally = MetricTally(tolerance_s)
    for trace in scored:
        picks = pick_window(
            trace.probs[:, 0],
            trace.probs[:, 1],
            trace.probs[:, 2],
            det_threshold=detection_threshold,
            p_threshold=p_threshold,
            s_threshold=s_threshold,
        )
        tally.add(
            earthquake=trace.earthquake,
            p_label=trace.p,
            s_label=trace.s,
            detections=picks.detections,
            p_picks=[pick.sample for pick in picks.p_picks],
            s_picks=[pick.sample for pick in picks.s_picks],
        )
    return tally.result()


def score_dataset(predict: Predict, dataset: SteadDataset, *, batch_size: int = 64, progress: bool | None = None, **thresholds) -> dict:
    """The 25 metrics plus ``n_events`` for ``predict`` on every readable trace of ``dataset``
    (``thresholds``: those of :func:`score_predictions`)."""
    return score_predictions(predict_dataset(predict, dataset, batch_size=batch_size, progress=progress), **thresholds)


THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 19))  # 0.05 … 0.90


def select_thresholds(
    scored: list[Scored],
    *,
    grid: tuple[float, ...] = THRESHOLD_GRID,
    detection_threshold: float = DETECTION_THRESHOLD,
    tolerance_s: float = TOLERANCE_S,
) -> dict[str, float]:
    """Per-phase thresholds that maximise P F1 and S F1 on ``scored`` (validation data only):
    each phase's threshold is searched over ``grid`` with the other at its default; ties go to
    the lowest threshold; a phase with no defined F1 keeps its default."""
    chosen = {"p_threshold": P_THRESHOLD, "s_threshold": S_THRESHOLD}
    for key, metric in (("p_threshold", "p_f1"), ("s_threshold", "s_f1")):
        best = None
        for value in grid:
            f1 = score_predictions(scored, detection_threshold=detection_threshold, tolerance_s=tolerance_s, **{key: value})[metric]
            if f1 is not None and (best is None or f1 > best):
                best, chosen[key] = f1, value
    return chosen


def ensemble(predicts: list[Predict]) -> Predict:
    """A predictor that averages the [D, P, S] probabilities of several models."""
    if not predicts:
        raise ValueError("an ensemble needs at least one model")
    return lambda x: np.mean([np.asarray(predict(x)) for predict in predicts], axis=0)


def evaluate(
    model: str,
    hdf5: str | Path,
    csv_path: str | Path,
    *,
    weights: str | Path | None = None,
    members: Sequence[tuple[str, str | Path | None]] = (),
    tune_csv: str | Path | None = None,
    **options,
) -> dict:
    """Load ``model`` (with ``weights``), score it on the STEAD-format set, and return the report:
    the 25 metrics, ``n_events``, ``tolerance_s``, ``model`` and ``weights_sha256``.

    ``members``: further ``(model, weights)`` pairs whose probabilities are averaged with the
    first (an ensemble; the report then lists every member under ``ensemble``). ``tune_csv``:
    traces of the same HDF5 (a validation split) on which :func:`select_thresholds` chooses the
    P and S thresholds used on ``csv_path`` (reported under ``thresholds``).
    """
    from eqt_monitor.model.load import load_model

    batch_size, progress = options.pop("batch_size", 64), options.pop("progress", None)
    loaded = [load_model(name, w) for name, w in [(model, weights), *members]]
    predict = loaded[0].predict if len(loaded) == 1 else ensemble([m.predict for m in loaded])
    tuned = {}
    if tune_csv is not None:
        with SteadDataset(hdf5, tune_csv) as dataset:
            scored = predict_dataset(predict, dataset, batch_size=batch_size, progress=progress)
        tuned = select_thresholds(
            scored,
            detection_threshold=options.get("detection_threshold", DETECTION_THRESHOLD),
            tolerance_s=options.get("tolerance_s", TOLERANCE_S),
        )
        options.update(tuned)
    with SteadDataset(hdf5, csv_path) as dataset:
        result = score_dataset(predict, dataset, batch_size=batch_size, progress=progress, **options)
    result["tolerance_s"] = options.get("tolerance_s", TOLERANCE_S)
    result["model"] = model
    result["weights_sha256"] = loaded[0].weights_sha256
    if members:
        result["ensemble"] = [{"model": m.spec.name, "weights_sha256": m.weights_sha256} for m in loaded]
    if tuned:
        result["thresholds"] = {**tuned, "chosen_on": str(tune_csv)}
    return result
