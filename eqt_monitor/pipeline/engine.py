"""The engine: per-station incremental windowing, stacking and picking, and the
``Engine`` that batches the windows of all stations into one model.

Data arrives as ``Segment``s (``eqt_monitor.pipeline.buffer``) in any sizes; windows follow the absolute
time grid of ``eqt_monitor.pipeline.windows``; outputs are max-stacked (``predictor.stack``) and a sample is
released as *final* once every window that can still cover it has been predicted. The picker
runs on final samples only. Whatever the segment sizes, the interleaving of stations and the
calls to ``Engine.process``, the probabilities, detections and picks come out the same.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from eqt_monitor.errors import UserError
from eqt_monitor.pipeline.early import EarlyPick, EarlyPicker
from eqt_monitor.pipeline.picker import DetectionPicks, IncrementalPicker, PhasePick, PickerConfig
from eqt_monitor.pipeline.predictor import BLINDING, PredictFn, Predictor, stack
from eqt_monitor.pipeline.windows import grid_starts, stretch_origin
from eqt_monitor.records import (SAMPLING_RATE, WINDOW_SAMPLES, Detection, EarlyOutcome, Pick, ProbabilitySegment,
                                  Segment, StationKey)

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_STEP = WINDOW_SAMPLES - 2 * BLINDING  # a larger step leaves samples that no unblinded window covers
# Data this far before a time makes the windows (on the absolute grid) and the stacked output after
# it equal to an uninterrupted run's: replay reads this beyond each end of its span, a restarted or
# re-added live station re-reads this much before its settled time, plot this around an event.
CONTEXT_S = 2 * WINDOW_SAMPLES / SAMPLING_RATE


@dataclass(frozen=True)
class EngineConfig:
    """Window step (samples between grid windows), model batch size, and the picker's settings."""

    step: int = 3000
    batch_size: int = 64
    picker: PickerConfig = field(default_factory=PickerConfig)
    fill_blinding: int = 200  # output samples zeroed on each side of zero-filled data (Segment.blind)
    uncertainty: bool = False  # predict_fn returns Monte-Carlo [D, P, S] means and stds (6 outputs)
    early_picks: bool = False  # also preliminary picks from single windows (eqt_monitor.pipeline.early)

    @property
    def outputs(self) -> int:
        """Model outputs per sample: 3, or 6 with Monte-Carlo stds."""
        return 6 if self.uncertainty else 3

    def __post_init__(self):
        if self.fill_blinding < 0:
            raise UserError(f"fill_blinding: must be >= 0 samples, got {self.fill_blinding}")
        if not 1 <= self.step <= MAX_STEP:
            raise UserError(f"model step: must be between 1 and {MAX_STEP} samples (windows of {WINDOW_SAMPLES} "
                            f"with {BLINDING} blinded at each edge), got {self.step}")
        if self.batch_size < 1:
            raise UserError(f"model batch_size: must be positive, got {self.batch_size}")


@dataclass
class EngineOutput:
    """What one ``Engine.process`` call produced (each list sorted by station, then time)."""

    probabilities: list[ProbabilitySegment] = field(default_factory=list)
    picks: list[Pick] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    windows: int = 0  # windows predicted in this call
    early_picks: list[Pick] = field(default_factory=list)  # new preliminary picks (EngineConfig.early_picks)
    early_outcomes: list[EarlyOutcome] = field(default_factory=list)  # preliminary picks now replaced or retracted


@dataclass(eq=False)
class WindowJob:
    """One window to predict: raw counts ``data`` ``(6000, 3)`` starting at stretch index ``start``;
    ``head``/``tail`` samples of its output are blinded; only the first ``valid`` are data (the
    rest of a short stretch's window is zero padding)."""

    stretch: _Stretch
    start: int
    head: int
    tail: int
    valid: int
    data: np.ndarray


class _Stretch:
    """One continuous stretch of a station: raw data still needed, stacked-but-not-final output,
    and the picker's state. Indices count samples from the stretch's first sample."""

    def __init__(self, station: StationKey, start: float, step: int, picker: PickerConfig, fill_blinding: int = 0,
                 outputs: int = 3, early_picks: bool = False):
        self.station = station
        self.outputs = outputs
        self.start = start
        self.step = step
        self.fill_blinding = fill_blinding
        self.origin = stretch_origin(start)
        # sub-sample offset of the data from the 100 Hz grid, to the microsecond (miniSEED's resolution)
        self._offset = round(start - self.origin / SAMPLING_RATE, 6)
        self.received = 0  # samples received (m)
        self.ended = False
        self.final = 0  # samples released as final (F)
        self._raw_first = 0  # stretch index of self._raw[0]
        self._raw = np.empty((0, 3), dtype=np.float32)
        self._stacked = np.zeros((0, outputs), dtype=np.float32)  # samples [final, received)
        self._marks = np.zeros(0, dtype=bool)  # Segment.blind of samples [final - fill_blinding, received)
        self._any_marks = False
        self._start_emitted = False
        self._end_emitted = False
        self._next_grid = 0
        self._pending: deque[WindowJob] = deque()
        self._picker = IncrementalPicker(picker)
        self._early = EarlyPicker(picker) if early_picks else None
        self._early_new: list[EarlyPick] = []

    @property
    def done(self) -> bool:
        """Ended, every sample final and picked."""
        return self.ended and self._end_emitted and not self._pending and self.final == self.received

    @property
    def held_samples(self) -> int:
        """Samples of raw data, stacked output and picker context held now."""
        return len(self._raw) + len(self._stacked) + self._picker.held_samples

    @property
    def settled_until(self) -> float:
        """Time before which this stretch emits no more picks or detections: the first sample the
        picker still holds (every later detection, and its P, lies at or after it)."""
        return self.time(self.final - self._picker.held_samples)

    def time(self, index: int | float) -> float:
        """POSIX time of stretch sample ``index``, computed from its absolute sample number so that
        a sample has the same time in any stretch that contains it."""
        return (self.origin + index) / SAMPLING_RATE + self._offset

    def append(self, data: np.ndarray, blind: np.ndarray | None = None) -> None:
        self._raw = np.concatenate([self._raw, data])
        self._stacked = np.concatenate([self._stacked, np.zeros((len(data), self.outputs), dtype=np.float32)])
        if self.fill_blinding:
            if len(self._marks) == 0:  # a new stretch: nothing before its first sample
                self._marks = np.zeros(self.fill_blinding, dtype=bool)
            marks = np.zeros(len(data), dtype=bool) if blind is None else np.asarray(blind, dtype=bool)
            self._marks = np.concatenate([self._marks, marks])
            self._any_marks = self._any_marks or bool(marks.any())
        self.received += len(data)

    def _blind(self, probs: np.ndarray) -> None:
        """Zero the output of the ``len(probs)`` samples from ``final`` that lie within
        ``fill_blinding`` samples of a marked (zero-filled) one; keep the marks still needed."""
        w, k = self.fill_blinding, len(probs)
        if not w:
            return
        if self._any_marks:
            window = self._marks[: k + 2 * w]  # marks of samples [final - w, final + k + w)
            near = np.concatenate([[0], np.cumsum(window)])
            hits = near[np.minimum(np.arange(k) + 2 * w + 1, len(window))] - near[np.arange(k)]
            probs[hits > 0] = 0.0
        self._marks = self._marks[k:]
        self._any_marks = self._any_marks and bool(self._marks.any())

    def _blinded(self, job: WindowJob, output: np.ndarray) -> np.ndarray:
        """One window's output with the samples near zero-filled data zeroed, as ``_blind`` zeroes
        the stacked output (a preliminary pick must not come from a fill's edge)."""
        w = self.fill_blinding
        if not w or not self._any_marks:
            return output
        first = self.final - w  # stretch index of self._marks[0]
        lo, hi = job.start - w - first, job.start + job.valid + w - first
        marks = np.zeros(job.valid + 2 * w, dtype=bool)
        got = self._marks[max(lo, 0):max(hi, 0)]
        marks[max(-lo, 0):max(-lo, 0) + len(got)] = got
        if not marks.any():
            return output
        near = np.concatenate([[0], np.cumsum(marks)])
        k = np.arange(job.valid)
        out = output.copy()
        out[:job.valid][near[k + 2 * w + 1] - near[k] > 0] = 0.0
        return out

    def take_windows(self) -> list[WindowJob]:
        """The windows that became ready since the last call, in start order."""
        m = self.received
        jobs = []
        if not self._start_emitted and m >= WINDOW_SAMPLES:
            jobs.append(self._job(0, head=0, tail=BLINDING))
            self._start_emitted = True
        starts = grid_starts(self.origin, self.step, self._next_grid, m)
        jobs.extend(self._job(int(i), head=BLINDING, tail=BLINDING) for i in starts if i > 0)
        if starts.size:
            self._next_grid = int(starts[-1]) + 1
        if self.ended and not self._end_emitted:
            if m >= WINDOW_SAMPLES:
                jobs.append(self._job(m - WINDOW_SAMPLES, head=0 if m == WINDOW_SAMPLES else BLINDING, tail=0))
            elif m > 0:
                jobs.append(self._job(0, head=0, tail=0, valid=m))
            self._end_emitted = True
        self._pending.extend(jobs)
        return jobs

    def _job(self, start: int, *, head: int, tail: int, valid: int = WINDOW_SAMPLES) -> WindowJob:
        data = np.zeros((WINDOW_SAMPLES, 3), dtype=np.float32)
        data[:valid] = self._raw[start - self._raw_first:start - self._raw_first + valid]
        return WindowJob(self, start, head, tail, valid, data)

    def put(self, job: WindowJob, output: np.ndarray) -> None:
        """Stack a predicted window (windows come back in the order they were taken)."""
        if not self._pending or self._pending[0] is not job:
            raise RuntimeError(f"{self.station}: window at {job.start} predicted out of order")
        self._pending.popleft()
        stack(self._stacked, job.start - self.final, output[:job.valid], head=job.head, tail=job.tail)
        if self._early is not None:
            self._early_new += self._early.window(job.start, self._blinded(job, output), job.valid, self.final)

    def _final_bound(self) -> int:
        """Samples before this index can no longer change: no pending or future window covers them."""
        if self.ended and self._end_emitted:
            bound = self.received
        elif self._start_emitted and self.received > WINDOW_SAMPLES:
            # the next grid window starts after received - 6000 and so does the end window
            bound = self.received - WINDOW_SAMPLES + BLINDING
        else:
            bound = 0  # the start (or end) window may still cover everything from sample 0
        if self._pending:
            bound = min(bound, self._pending[0].start + self._pending[0].head)
        return bound

    def take_early(self) -> list[EarlyPick]:
        """Preliminary picks made since the last call (stretch indices)."""
        new, self._early_new = self._early_new, []
        return new

    def resolve_early(self, events: list[DetectionPicks]) -> list[tuple[EarlyPick, tuple[str, PhasePick] | None]]:
        """Preliminary picks no later final pick can replace, each with the final pick (phase, pick)
        among ``events`` (the detections just released) or earlier ones that replaces it, or None."""
        if self._early is None:
            return []
        finals = [(phase, pick.sample, (phase, pick)) for e in events for phase, pick in (("P", e.p), ("S", e.s))
                  if pick is not None]
        settled = None if self.done else self.final - self._picker.held_samples
        return self._early.resolve(finals, settled)

    def release(self) -> tuple[ProbabilitySegment | None, list[DetectionPicks]]:
        """Final samples since the last call as a ``ProbabilitySegment`` (None if none), and the
        detections completed (stretch indices)."""
        closing = self.ended and self._end_emitted and not self._pending
        bound = self._final_bound()
        k = bound - self.final
        if k <= 0:
            return None, []
        probs = self._stacked[:k]
        self._blind(probs)
        raw = self._raw[self.final - self._raw_first:bound - self._raw_first]
        segment = ProbabilitySegment(self.station, self.time(self.final), probs[:, 0].copy(), probs[:, 1].copy(),
                                     probs[:, 2].copy(), meta={"stretch_start": self.final == 0, "stretch_end": closing})
        events = self._picker.push(probs, raw, stretch_ended=closing)
        self._stacked = self._stacked[k:]
        self.final = bound
        future_from = self.received if self._end_emitted else max(self.received - WINDOW_SAMPLES, 0)
        drop = min(self.final, future_from) - self._raw_first
        self._raw = self._raw[drop:]
        self._raw_first += drop
        return segment, events


class StationProcessor:
    """One station: takes its ``Segment``s, hands out windows to predict, takes their outputs and
    releases final stacked probabilities with the detections and picks made on them."""

    def __init__(self, station: StationKey, step: int = 3000, picker: PickerConfig | None = None,
                 fill_blinding: int = 0, outputs: int = 3, early_picks: bool = False):
        self.station = station
        self.outputs = outputs
        self.early_picks = early_picks
        self.step = step
        self.picker = picker or PickerConfig()
        self.fill_blinding = fill_blinding
        self._stretches: deque[_Stretch] = deque()  # oldest first; only the last may be open
        self._done_until: float | None = None  # end of the last finished stretch

    @property
    def settled_until(self) -> float | None:
        """Time before which this station emits no more picks or detections from the data fed so
        far (None before any data): what a restarted daemon must not pick again."""
        if self._stretches:
            return min(s.settled_until for s in self._stretches)
        return self._done_until

    @property
    def received_until(self) -> float | None:
        """Time just after the last sample fed (None before any data, or once all stretches are done)."""
        if self._stretches:
            last = self._stretches[-1]
            return last.time(last.received)
        return self._done_until

    @property
    def held_samples(self) -> int:
        """Samples (each three floats) held for this station now, over all its stretches."""
        return sum(s.held_samples for s in self._stretches)

    def feed(self, segment: Segment) -> None:
        """Append a segment. Segments of a stretch must be contiguous: a later start than expected
        (an unannounced gap) ends the stretch, an earlier one (overlap) drops the repeated samples;
        both with a warning naming the station."""
        data = np.asarray(segment.data, dtype=np.float32)
        blind = segment.blind
        if data.ndim != 2 or data.shape[1] != 3:
            raise ValueError(f"{self.station}: segment data must be (n, 3) [E, N, Z], got {data.shape}")
        start = segment.start
        current = self._stretches[-1] if self._stretches and not self._stretches[-1].ended else None
        if current is not None and segment.stretch_start:
            log.warning("%s: a new stretch starts at %.2f before the previous one ended; ending it", self.station, start)
            current.ended, current = True, None
        if current is not None:
            shift = round((start - current.time(current.received)) * SAMPLING_RATE)
            if shift > 0:
                log.warning("%s: %d samples missing before %.2f without a stretch end; starting a new stretch",
                            self.station, shift, start)
                current.ended, current = True, None
            elif shift < 0:
                log.warning("%s: segment at %.2f overlaps %d samples already received; dropping them",
                            self.station, start, -shift)
                data = data[-shift:]
                blind = None if blind is None else blind[-shift:]
        if current is None:
            if not len(data):
                return
            current = _Stretch(self.station, start, self.step, self.picker, self.fill_blinding, self.outputs,
                               self.early_picks)
            self._stretches.append(current)
        current.append(data, blind)
        current.ended = current.ended or segment.stretch_end

    def take_windows(self) -> list[WindowJob]:
        """Windows ready to predict since the last call, oldest stretch first."""
        return [job for s in self._stretches for job in s.take_windows()]

    @staticmethod
    def put(job: WindowJob, output: np.ndarray) -> None:
        """Stack one predicted window ``(6000, 3)`` [D, P, S] (in the order the windows were taken)."""
        job.stretch.put(job, output)

    def release(self) -> EngineOutput:
        """Final probabilities, detections and picks since the last call."""
        out = EngineOutput()
        for stretch in list(self._stretches):
            out.early_picks += [self._early_pick(stretch, e) for e in stretch.take_early()]
            segment, events = stretch.release()
            if segment is not None:
                out.probabilities.append(segment)
            for event in events:
                out.detections.append(Detection(self.station, stretch.time(event.start), stretch.time(event.end),
                                                event.probability, event.std))
                for phase, pick in (("P", event.p), ("S", event.s)):
                    if pick is not None:
                        out.picks.append(self._final_pick(stretch, phase, pick))
            out.early_outcomes += [
                EarlyOutcome(self._early_pick(stretch, early), None if final is None else self._final_pick(stretch, *final))
                for early, final in stretch.resolve_early(events)]
            if stretch.done:
                self._done_until = stretch.time(stretch.received)
                self._stretches.remove(stretch)
        return out


    def _final_pick(self, stretch: _Stretch, phase: str, pick: PhasePick) -> Pick:
        return Pick(self.station, phase, stretch.time(pick.sample), pick.probability, pick.snr, pick.amplitude,
                    pick.std, pick.time_uncertainty)

    def _early_pick(self, stretch: _Stretch, early: EarlyPick) -> Pick:
        return Pick(self.station, early.phase, stretch.time(early.sample), early.probability)


class Engine:
    """All stations and one model: ``feed`` segments, then ``process`` to predict and pick."""

    def __init__(self, predict_fn: PredictFn, config: EngineConfig | None = None,
                 on_station_error: Callable[[StationKey, Exception], None] | None = None):
        """``on_station_error``: called when one station's windowing, stacking or picking raises;
        that station is then removed and the others go on. Without it the exception propagates."""
        self.config = config or EngineConfig()
        self.predictor = Predictor(predict_fn, self.config.batch_size, self.config.outputs)
        self.on_station_error = on_station_error
        self._stations: dict[StationKey, StationProcessor] = {}
        self._queue: deque[WindowJob] = deque()

    @property
    def pending_windows(self) -> int:
        """Windows taken but not yet predicted (fewer than a batch after an uncapped ``process()``)."""
        return len(self._queue)

    @property
    def pending_stations(self) -> set[StationKey]:
        """Stations with windows taken but not yet predicted."""
        return {job.stretch.station for job in self._queue}

    def remove(self, station: StationKey) -> None:
        """Forget a station: its processor, held data and windows waiting for the model."""
        processor = self._stations.pop(station, None)
        if processor is not None:
            self._queue = deque(job for job in self._queue if job.stretch.station != station)

    def _guarded(self, station: StationKey, action: Callable[[], T]) -> T | None:
        """``action()``, or with ``on_station_error`` set: report a failure, drop the station, None."""
        if self.on_station_error is None:
            return action()
        try:
            return action()
        except Exception as exc:  # one station's failure must not stop the others
            self.remove(station)
            self.on_station_error(station, exc)
            return None

    @property
    def stations(self) -> list[StationKey]:
        """Stations seen so far, sorted."""
        return sorted(self._stations)

    def station(self, station: StationKey) -> StationProcessor:
        """The station's processor (created on first use)."""
        if station not in self._stations:
            self._stations[station] = StationProcessor(station, self.config.step, self.config.picker,
                                                       self.config.fill_blinding, self.config.outputs,
                                                       self.config.early_picks)
        return self._stations[station]

    def feed(self, segment: Segment) -> None:
        """Queue a segment of data for its station (see ``StationProcessor.feed``); with
        ``on_station_error`` set, a segment the station cannot take drops that station."""
        self._guarded(segment.station, lambda: self.station(segment.station).feed(segment))

    def process(self, flush: bool = False, max_batches: int | None = None) -> EngineOutput:
        """Predict the ready windows of all stations in full batches (with ``flush``, also the last
        partial batch), stack them, and return what became final since the last call. ``flush``
        never ends a stretch: only a segment marked ``stretch_end`` does. ``max_batches``: predict
        at most this many batches now and leave the rest queued (a caller catching up on a backlog
        stays responsive); the results do not depend on it."""
        for station in self.stations:
            self._queue.extend(self._guarded(station, self._stations[station].take_windows) or [])
        windows, batches = 0, 0
        while self._queue and (flush or len(self._queue) >= self.config.batch_size) and batches != max_batches:
            batches += 1
            jobs = [self._queue.popleft() for _ in range(min(self.config.batch_size, len(self._queue)))]
            for job, output in zip(jobs, self.predictor.predict(np.stack([job.data for job in jobs]))):
                if job.stretch.station in self._stations:  # not dropped by a failure earlier in this batch
                    self._guarded(job.stretch.station, lambda: StationProcessor.put(job, output))
            windows += len(jobs)
        out = EngineOutput(windows=windows)
        for station in self.stations:
            released = self._guarded(station, self._stations[station].release)
            if released is None:
                continue
            out.probabilities += released.probabilities
            out.picks += sorted(released.picks, key=lambda p: (p.time, p.phase))
            out.detections += released.detections
            out.early_picks += sorted(released.early_picks, key=lambda p: (p.time, p.phase))
            out.early_outcomes += released.early_outcomes
        return out
