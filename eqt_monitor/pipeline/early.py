"""Early picks: a *preliminary* pick from a single window's output as soon as that window is
predicted, later replaced by the *final* pick (made on the stacked output, as replay makes it) or
retracted.

EqT's final picks wait until every window that covers a sample has been stacked: about a window
(60 s) of data after the arrival. A window already sees an arrival well once it lies
``EARLY_MARGIN`` (5 s) or more inside it, so with a 10 s step a preliminary pick exists 5-15 s
of data after the arrival. The rules:

- a window's picks are EqT's (``picker.pick_events`` with the station's thresholds) on that
  window's own output; only those at least ``EARLY_MARGIN`` samples from both edges count;
- a pick already final (before the stretch's final samples) is not made again, nor one within
  ``MATCH`` samples of an open preliminary pick or a final pick of the same phase (the next
  windows see the same arrival: one preliminary pick per arrival);
- once no final pick can come within ``MATCH`` of a preliminary one (the picker has settled past
  it), the nearest final pick of the same phase within ``MATCH`` replaces it, or it is retracted.

Final picks are untouched by this: they equal replay's whether early picks are on or off.
"""
from __future__ import annotations

from collections import deque
from typing import NamedTuple, TypeVar

import numpy as np

from eqt_monitor.pipeline.picker import PickerConfig, pick_events

EARLY_MARGIN = 500  # samples (5 s): a window's pick counts only this far inside it
MATCH = 100  # samples (1 s): a final pick of the same phase this close replaces a preliminary one

T = TypeVar("T")


class EarlyPick(NamedTuple):
    """A preliminary pick in stretch sample indices."""

    phase: str
    sample: int
    probability: float


class EarlyPicker:
    """The preliminary picks of one stretch and what became of them."""

    def __init__(self, config: PickerConfig):
        self.config = config
        self._open: list[EarlyPick] = []
        self._finals: deque[tuple[str, int, object]] = deque()  # recent final picks (phase, sample, record)

    def window(self, start: int, output: np.ndarray, valid: int, final: int) -> list[EarlyPick]:
        """New preliminary picks from one predicted window whose first sample is stretch index
        ``start``: ``output`` ``(6000, >=3)`` [D, P, S, ...], ``valid`` samples of it data, samples
        before stretch index ``final`` already final."""
        lo, hi = EARLY_MARGIN, valid - EARLY_MARGIN
        if hi <= lo:
            return []
        out = output[:valid]
        new = []
        for event in pick_events(out[:, 0], out[:, 1], out[:, 2], self.config):
            for phase, pick in (("P", event.p), ("S", event.s)):
                if pick is None or not lo < pick.sample < hi:
                    continue
                sample = start + pick.sample
                if sample < final or self._seen(phase, sample):
                    continue
                early = EarlyPick(phase, sample, pick.probability)
                self._open.append(early)
                new.append(early)
        return new

    def _seen(self, phase: str, sample: int) -> bool:
        return any(p == phase and abs(s - sample) <= MATCH for p, s, _ in self._finals) or any(
            o.phase == phase and abs(o.sample - sample) <= MATCH for o in self._open)

    def resolve(self, finals: list[tuple[str, int, T]], settled: int | None) -> list[tuple[EarlyPick, T | None]]:
        """Take the final picks just made, (phase, sample, the caller's record of it), and resolve the
        preliminary picks that no later final pick can replace any more: those more than ``MATCH``
        before ``settled`` (the first sample the picker still holds; None once the stretch has ended:
        all of them). Returns each resolved preliminary pick with the record of the final pick that
        replaces it, or None (retracted)."""
        self._finals.extend(finals)
        resolved, used = [], set()
        for early in sorted(self._open, key=lambda e: e.sample):
            if settled is not None and early.sample + MATCH >= settled:
                continue
            near = [i for i, (phase, sample, _) in enumerate(self._finals)
                    if phase == early.phase and abs(sample - early.sample) <= MATCH and i not in used]
            best = min(near, key=lambda i: (abs(self._finals[i][1] - early.sample), i), default=None)
            if best is not None:
                used.add(best)
            resolved.append((early, None if best is None else self._finals[best][2]))
            self._open.remove(early)
        horizon = None if settled is None else settled - 2 * MATCH
        while self._finals and (horizon is None or self._finals[0][1] < horizon):
            self._finals.popleft()
        return resolved
