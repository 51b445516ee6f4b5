"""Detections and P/S picks from detection/P/S probability traces, by EQTransformer's rules.

One implementation, ``pick_events``, serves both a single 6000-sample window (``pick_window``,
for ``evaluate``) and the continuous stacked traces (``IncrementalPicker``, run by the engine on
final samples as they arrive). The rules, as in EqT's ``mseed_predictor._picker``:

- a detection is a run of at least ``min_detection_samples`` samples with D >= threshold;
- P and S candidates are local maxima >= their thresholds (EqT's ``_detect_peaks`` with
  ``mpd=1``: a sample higher than the one before and not lower than the one after; a trace's
  first and last samples are never peaks);
- S is the earliest S candidate strictly inside the detection (start < S < end);
- P is the strongest P candidate after ``start - 100`` (1 s before the detection) and before
  ``S - 10`` (0.1 s before S) or, when the detection has no S, before its end (all bounds
  exclusive); the first one wins a tie.

Where we differ: a detection is kept even when it has neither pick (EqT's CSV leaves it out), and
a run longer than ``max_detection_samples`` is cut to that length and the rest of that run
ignored, which bounds the context the streaming picker must hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from eqt_monitor.pipeline.windows import bandpass

P_LEAD = 100  # samples: P may come up to 1 s before the detection starts
S_GAP = 10  # samples: P must come more than 0.1 s before S
FILTER_PAD = 200  # raw samples filtered beyond each side of the SNR windows, keeping edge effects out


@dataclass(frozen=True)
class PickerConfig:
    """Thresholds and limits of the picker (defaults: EqT's ``mseed_predictor``)."""

    detection_threshold: float = 0.3
    p_threshold: float = 0.1
    s_threshold: float = 0.1
    min_detection_samples: int = 10
    max_detection_samples: int = 30000  # 5 min
    snr_window: int = 100  # samples of noise before and signal after a pick (EqT's mseed_predictor)


class PhasePick(NamedTuple):
    """A pick in sample indices of the traces it was found on."""

    sample: int
    probability: float
    snr: float | None = None  # dB, EqT's definition; None without data
    amplitude: float | None = None  # counts; None without data
    std: float | None = None  # Monte-Carlo dropout: std of the probability at the pick
    time_uncertainty: float | None = None  # seconds, see ``time_uncertainty``


class DetectionPicks(NamedTuple):
    """One detection (samples ``start`` to ``end`` inclusive) and its P and S picks, if any."""

    start: int
    end: int
    probability: float  # mean D over the detection
    p: PhasePick | None
    s: PhasePick | None
    std: float | None = None  # Monte-Carlo dropout: mean std of D over the detection

    def shifted(self, offset: int) -> DetectionPicks:
        """The same event with every sample index moved by ``offset``."""
        return self._replace(start=self.start + offset, end=self.end + offset,
                             p=self.p and self.p._replace(sample=self.p.sample + offset),
                             s=self.s and self.s._replace(sample=self.s.sample + offset))


class WindowPicks(NamedTuple):
    """``pick_window``'s result: detections ``(start, end, probability)``, P and S picks."""

    detections: list[tuple[int, int, float]]
    p_picks: list[PhasePick]
    s_picks: list[PhasePick]


def detection_runs(d: np.ndarray, threshold: float, min_samples: int, max_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and inclusive ends of the runs of ``d >= threshold`` at least ``min_samples`` long,
    each cut to at most ``max_samples``."""
    above = np.concatenate([[0], (np.asarray(d) >= threshold).astype(np.int8), [0]])
    edges = np.diff(above)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    keep = ends - starts + 1 >= min_samples
    starts, ends = starts[keep], ends[keep]
    return starts, np.minimum(ends, starts + max_samples - 1)


def find_peaks(x: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the local maxima of ``x`` that are ``>= threshold`` (EqT's ``_detect_peaks``,
    ``mpd=1``, rising edge of flat tops; never the first or last sample)."""
    dx = np.diff(np.asarray(x, dtype=np.float64))
    peaks = np.flatnonzero((dx[:-1] > 0) & (dx[1:] <= 0)) + 1
    return peaks[x[peaks] >= threshold]


def snr_and_amplitude(data: np.ndarray, sample: int, window: int) -> tuple[float | None, float | None]:
    """EqT's SNR of a pick and the peak amplitude after it, from raw counts ``data`` ``(n, 3)``.

    The data around the pick is demeaned and bandpassed 1–45 Hz like the model's input (raw
    broadband counts are dominated by offsets and microseism). With ``w = min(window, sample,
    n - sample)``, noise is ``[sample - w, sample)`` and signal ``[sample, sample + w)``; SNR is
    ``20 log10(p95(signal) / p95(noise))`` over all three components, in dB rounded to 0.1, or
    ``None`` when a 95th percentile is not positive. Amplitude is the largest absolute filtered
    value in the signal window, in counts."""
    n = len(data)
    w = min(window, sample, n - sample)
    if w <= 0:
        return None, None
    lo, hi = max(0, sample - w - FILTER_PAD), min(n, sample + w + FILTER_PAD)
    piece = np.asarray(data[lo:hi], dtype=np.float64)
    filtered = bandpass(piece - piece.mean(axis=0), axis=0)
    at = sample - lo
    noise, signal = filtered[at - w:at], filtered[at:at + w]
    amplitude = float(np.abs(signal).max())
    noise95, signal95 = np.percentile(noise, 95), np.percentile(signal, 95)
    if noise95 <= 0 or signal95 <= 0:
        return None, amplitude
    return round(20.0 * math.log10(signal95 / noise95), 1), amplitude


def with_snr(event: DetectionPicks, data: np.ndarray, window: int, first: int = 0) -> DetectionPicks:
    """``event`` with SNR and amplitude on its picks, measured on raw ``data`` ``(n, 3)`` whose row 0
    is sample ``first`` of the event's indices."""
    def measured(pick: PhasePick | None) -> PhasePick | None:
        if pick is None:
            return None
        snr, amplitude = snr_and_amplitude(data, pick.sample - first, window)
        return pick._replace(snr=snr, amplitude=amplitude)
    return event._replace(p=measured(event.p), s=measured(event.s))


def time_uncertainty(mean: np.ndarray, std: np.ndarray, sample: int, rate: float = 100.0) -> float:
    """A pick's time uncertainty (s) from Monte-Carlo dropout: half the width of the run of samples
    around the pick whose mean probability is within one std (at the pick) of the peak, i.e. the
    samples the stochastic passes cannot tell from the peak; at least half a sample.

    The run is looked for within ``P_LEAD`` samples (1 s) either side of the pick only, so the value
    does not depend on how much the caller holds: at most 1.005 s (201 samples), which is also the
    value where the std reaches the mean and every sample is "within one std"."""
    lo, hi = max(0, sample - P_LEAD), min(len(mean) - 1, sample + P_LEAD)
    level = mean[sample] - std[sample]
    below = np.asarray(mean[lo:hi + 1]) < level
    at = sample - lo
    before = np.flatnonzero(below[:at])
    after = np.flatnonzero(below[at + 1:])
    first = lo + before[-1] + 1 if before.size else lo
    last = sample + after[0] if after.size else hi
    return round((last - first + 1) / (2.0 * rate), 3)


def with_uncertainty(event: DetectionPicks, probs: np.ndarray, first: int = 0) -> DetectionPicks:
    """``event`` with Monte-Carlo spreads from ``probs`` ``(n, 6)`` [D, P, S mean; D, P, S std] whose
    row 0 is sample ``first``: the detection's mean D std, each pick's std and time uncertainty."""
    def spread(pick: PhasePick | None, column: int) -> PhasePick | None:
        if pick is None:
            return None
        i = pick.sample - first
        return pick._replace(std=float(probs[i, column + 3]),
                             time_uncertainty=time_uncertainty(probs[:, column], probs[:, column + 3], i))
    std = float(np.mean(probs[event.start - first:event.end - first + 1, 3]))
    return event._replace(std=std, p=spread(event.p, 1), s=spread(event.s, 2))


def pick_events(d: np.ndarray, p: np.ndarray, s: np.ndarray, config: PickerConfig,
                data: np.ndarray | None = None, p_after: int = -1) -> list[DetectionPicks]:
    """Every detection on the traces ``d``, ``p``, ``s`` (1-D, same length) with its P and S pick,
    in time order; with raw ``data`` ``(n, 3)`` aligned to them, picks carry SNR and amplitude.

    A P peak serves one detection only: each detection's P comes after ``p_after`` and after
    the P of the detection before it (the 1 s lead before a detection can reach back to it)."""
    starts, ends = detection_runs(d, config.detection_threshold, config.min_detection_samples,
                                  config.max_detection_samples)
    p_peaks = find_peaks(p, config.p_threshold)
    s_peaks = find_peaks(s, config.s_threshold)
    events = []
    for start, end in zip(starts.tolist(), ends.tolist()):
        inside = s_peaks[np.searchsorted(s_peaks, start, side="right"):np.searchsorted(s_peaks, end, side="left")]
        s_sample = int(inside[0]) if inside.size else None
        p_end = s_sample - S_GAP if s_sample is not None else end
        lo = max(start - P_LEAD, p_after)
        candidates = p_peaks[np.searchsorted(p_peaks, lo, side="right"):np.searchsorted(p_peaks, p_end, side="left")]
        p_sample = int(candidates[np.argmax(p[candidates])]) if candidates.size else None
        if p_sample is not None:
            p_after = max(p_after, p_sample)
        event = DetectionPicks(start, end, float(np.mean(d[start:end + 1])),
                           None if p_sample is None else PhasePick(p_sample, float(p[p_sample])),
                           None if s_sample is None else PhasePick(s_sample, float(s[s_sample])))
        events.append(event if data is None else with_snr(event, data, config.snr_window))
    return events


def pick_window(d: np.ndarray, p: np.ndarray, s: np.ndarray, *, det_threshold: float, p_threshold: float,
                s_threshold: float, data: np.ndarray | None = None) -> WindowPicks:
    """Pick one window (e.g. a labelled 6000-sample trace): its detections ``(start, end,
    probability)`` in samples, and its P and S picks (``PhasePick``: sample, probability, and SNR
    and amplitude when the raw ``data`` ``(n, 3)`` is given)."""
    config = PickerConfig(detection_threshold=det_threshold, p_threshold=p_threshold, s_threshold=s_threshold)
    events = pick_events(d, p, s, config, data)
    return WindowPicks([(e.start, e.end, e.probability) for e in events],
                       [e.p for e in events if e.p is not None],
                       [e.s for e in events if e.s is not None])


class IncrementalPicker:
    """``pick_events`` over one stretch whose final samples arrive in pieces.

    Each detection is returned exactly once, once it has ended and the data its picks' SNR needs
    has arrived, with the same result as ``pick_events`` on the whole stretch. It holds only the
    samples from 1 s plus the SNR context before the earliest detection that may still be open.
    """

    def __init__(self, config: PickerConfig):
        self.config = config
        self._lead = P_LEAD + config.snr_window + FILTER_PAD + 1  # held before a possible detection
        self._after = config.snr_window + FILTER_PAD  # needed after a detection's end
        self._first = 0  # stretch index of the first held sample
        self._probs: np.ndarray | None = None  # (n, 3) [D, P, S], or (n, 6) with Monte-Carlo stds
        self._data = np.empty((0, 3), dtype=np.float32)
        self._done_until = -1  # stretch index of the last sample of the last run emitted or passed over
        self._last_p = -1  # stretch index of the last P emitted (a P serves one detection)

    @property
    def held_samples(self) -> int:
        """Samples of probabilities (and as many of raw data) held now."""
        return 0 if self._probs is None else len(self._probs)

    def push(self, probs: np.ndarray, data: np.ndarray, *, stretch_ended: bool = False) -> list[DetectionPicks]:
        """Add the next final samples (``probs`` ``(k, 3)`` [D, P, S], or ``(k, 6)`` with the Monte-Carlo
        stds after them, and raw ``data`` ``(k, 3)``) and
        return the detections now complete, in stretch sample indices. ``stretch_ended``: these
        are the stretch's last samples; everything held is returned."""
        self._probs = probs.copy() if self._probs is None else np.concatenate([self._probs, probs])
        self._data = np.concatenate([self._data, data])
        d = self._probs[:, 0]
        held_end = self._first + len(d)
        complete, first_open = [], None
        p_after = max(-1, self._last_p - self._first)
        for event in pick_events(d, self._probs[:, 1], self._probs[:, 2], self.config, p_after=p_after):
            event = event.shifted(self._first)
            if event.start <= self._done_until:  # a run already emitted, seen again (or its cut-off rest)
                self._done_until = max(self._done_until, self._run_end(event.end))
                continue
            if not stretch_ended and event.end + 1 + self._after > held_end:
                first_open = event.start
                break
            event = with_snr(event, self._data, self.config.snr_window, self._first)
            if self._probs.shape[1] == 6:
                event = with_uncertainty(event, self._probs, self._first)
            complete.append(event)
            self._done_until = self._run_end(event.end)
            if event.p is not None:
                self._last_p = event.p.sample
        if not stretch_ended:
            self._trim(first_open if first_open is not None else self._trailing_run_start())
        return complete

    def _run_end(self, end: int) -> int:
        """Stretch index of the last sample of the above-threshold run through ``end`` (as far as held)."""
        rest = self._probs[end + 1 - self._first:, 0] < self.config.detection_threshold
        return end + int(np.argmax(rest)) if rest.any() else self._first + len(self._probs) - 1

    def _trailing_run_start(self) -> int:
        """Where a detection could still begin: the start of an above-threshold run reaching the last
        held sample that is not one already emitted, else just after the last held sample."""
        held_end = self._first + len(self._probs)
        below = np.flatnonzero(self._probs[:, 0] < self.config.detection_threshold)
        start = self._first + (int(below[-1]) + 1 if below.size else 0)
        return held_end if start >= held_end or start <= self._done_until else start

    def _trim(self, keep_from: int) -> None:
        """Drop held samples more than the lead before stretch index ``keep_from``."""
        cut = max(0, keep_from - self._lead - self._first)
        self._probs, self._data = self._probs[cut:], self._data[cut:]
        self._first += cut
