"""The 25 detection and picking metrics of DESIGN.md §4, tallied trace by trace.

Per trace: an earthquake trace with ≥1 detection is ``d_tp``, with none ``d_fn``; a noise trace
with ≥1 detection is ``d_fp``, with none ``d_tn``. For each phase the pick closest to the label
is scored: within the tolerance ``tp``, further away ``fp`` and ``fn``; no pick ``fn``. On a
noise trace any pick of the phase is one ``fp``, none a ``tn``. A trace without a label for a
phase is left out of that phase's counts. Undefined ratios (0/0) are ``None``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PHASES = ("p", "s")
TOLERANCE_S = 0.5  # a pick within this of the label is a true positive
# EQTransformer's mseed_predictor defaults
DETECTION_THRESHOLD = 0.3
P_THRESHOLD = 0.1
S_THRESHOLD = 0.1
_PHASE_METRICS = ("precision", "recall", "f1", "mae", "rmse", "tp", "fp", "tn", "fn")
METRIC_NAMES: tuple[str, ...] = (
    "det_precision",
    "det_recall",
    "det_f1",
    "d_tp",
    "d_fp",
    "d_tn",
    "d_fn",
    *(f"{phase}_{m}" for phase in PHASES for m in _PHASE_METRICS),
)
LOWER_IS_BETTER = frozenset(n for n in METRIC_NAMES if n.endswith(("_mae", "_rmse", "_fp", "_fn")))
"""Metrics where a smaller value is better; for all others (precision, recall, f1, tp, tn) higher is."""


@dataclass
class _Counts:
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    residuals: list[float] = field(default_factory=list)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return _ratio(2 * precision * recall, precision + recall) or 0.0


class MetricTally:
    """Accumulates per-trace outcomes; :meth:`result` gives the 25 metrics plus ``n_events``."""

    def __init__(self, tolerance_s: float = 0.5, sampling_rate: float = 100.0):
        self.tolerance_s = tolerance_s
        self.sampling_rate = sampling_rate
        self.detection = _Counts()
        self.phases = {phase: _Counts() for phase in PHASES}
        self.n_events = 0

    def add(
        self,
        *,
        earthquake: bool,
        p_label: int | None,
        s_label: int | None,
        detections: Sequence,
        p_picks: Sequence[float],
        s_picks: Sequence[float],
    ) -> None:
        """Score one trace: its labels (sample indices) and the picker's detections and picks (samples)."""
        found = len(detections) > 0
        if earthquake:
            self.n_events += 1
            if found:
                self.detection.tp += 1
            else:
                self.detection.fn += 1
        elif found:
            self.detection.fp += 1
        else:
            self.detection.tn += 1
        for phase, label, picks in (("p", p_label, p_picks), ("s", s_label, s_picks)):
            counts = self.phases[phase]
            if not earthquake:
                if picks:
                    counts.fp += 1
                else:
                    counts.tn += 1
                continue
            if label is None:
                continue
            if not picks:
                counts.fn += 1
                continue
            residual = min((pick - label for pick in picks), key=abs) / self.sampling_rate
            if abs(residual) <= self.tolerance_s:
                counts.tp += 1
                counts.residuals.append(residual)
            else:
                counts.fp += 1
                counts.fn += 1

    def result(self) -> dict:
        """The 25 metrics (names as :data:`METRIC_NAMES`) plus ``n_events``."""
        d = self.detection
        precision, recall = _ratio(d.tp, d.tp + d.fp), _ratio(d.tp, d.tp + d.fn)
        out: dict = {
            "det_precision": precision,
            "det_recall": recall,
            "det_f1": _f1(precision, recall),
            "d_tp": d.tp,
            "d_fp": d.fp,
            "d_tn": d.tn,
            "d_fn": d.fn,
        }
        for phase, c in self.phases.items():
            precision, recall = _ratio(c.tp, c.tp + c.fp), _ratio(c.tp, c.tp + c.fn)
            n = len(c.residuals)
            out.update(
                {
                    f"{phase}_precision": precision,
                    f"{phase}_recall": recall,
                    f"{phase}_f1": _f1(precision, recall),
                    f"{phase}_mae": sum(abs(r) for r in c.residuals) / n if n else None,
                    f"{phase}_rmse": math.sqrt(sum(r * r for r in c.residuals) / n) if n else None,
                    f"{phase}_tp": c.tp,
                    f"{phase}_fp": c.fp,
                    f"{phase}_tn": c.tn,
                    f"{phase}_fn": c.fn,
                }
            )
        assert tuple(out) == METRIC_NAMES
        out["n_events"] = self.n_events
        return out
