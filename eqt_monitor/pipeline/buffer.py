"""Per-station buffers: raw ObsPy traces in, contiguous 100 Hz [E, N, Z] ``Segment``s out.

One ``StationBuffer`` per station merges and orders records, drops repeated samples,
resamples every rate to 100 Hz (``resample.StreamingResampler``), maps the components
to [E, N, Z], applies the ``GapPolicy`` and hands data on as soon as every expected
component has reached it. Replay and the live daemon both go through it.

Rules (see docs/DESIGN.md, Decisions):

- Components: the last letter of the channel code. ``Z``→Z, ``N``/``1``→N, ``E``/``2``→E;
  with the station's ``orientation`` (azimuth, dip per channel) horizontals off north/east
  are rotated to N/E as each segment is handed on (``orientation.Rotation``), without it
  ``1``/``2`` are used as they are (one warning). Any other letter is dropped with one warning.
- The station's 100 Hz sample grid starts at the first sample of each stretch; a record
  lands on the nearest grid sample (shift at most half a sample, as ObsPy's merge).
- Overlaps and duplicates: the first-received samples win; later ones are dropped and
  counted, never added twice. Records may arrive out of order: a gap stays open for late
  records until the component's data runs ``reorder_s`` past it; a record for a time
  already handed on is dropped. (At rates other than 100 Hz a record older than the
  component's latest one counts as an overlap: the resampler runs forward only.)
- Gaps in one component (the others have data): up to ``interpolate_max_s`` linearly
  interpolated, longer ones zero-filled; both counted in ``Segment.filled``.
- Gaps in every component at once longer than ``zero_fill_max_s`` end the stretch:
  ``stretch_end`` on the segment before, ``stretch_start`` on the one after, and the new
  stretch keeps its own sample times. Shorter ones are filled as above.
- A component that has not arrived while the others are ``dead_channel_s`` ahead is
  zero-filled from then on (logged once per outage), so one dead channel does not stall
  the station; it rejoins when its data comes back.
- Missing components (a Z-only station) are zeros. With ``channels`` given the buffer
  waits only for those; without, it waits for E, N and Z, and one never seen is
  zero-filled after ``dead_channel_s`` (filled samples are counted only for components
  the station has or declares).
- Memory: call ``pop_ready`` after adding; fed in time order with components within
  ``dead_channel_s`` of each other, a buffer holds at most ``dead_channel_s`` plus one
  record of samples per component (under the 6000 + 3000 samples of a window and a step).
- The output does not depend on how the input is cut into records (as long as no
  component lags the others by ``dead_channel_s``); one sample is held back until the
  next data shows whether it ends a stretch.
"""
from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import obspy

from eqt_monitor.errors import BAD_DATA, UserError
from eqt_monitor.pipeline.orientation import Rotation
from eqt_monitor.pipeline.resample import StreamingResampler, rate_ratio
from eqt_monitor.records import SAMPLING_RATE, Segment, StationKey

log = logging.getLogger(__name__)

COMPONENT_SLOT = {"E": 0, "N": 1, "Z": 2, "2": 0, "1": 1}  # [E, N, Z]; 1→N, 2→E (rotated when oriented)
SLOT_NAMES = "ENZ"
MAX_FILL_S = 600.0  # longest gap a buffer fills (zeros or interpolation): 60 000 samples per component


@dataclass(frozen=True)
class GapPolicy:
    """How a station buffer handles missing data (seconds).

    ``interpolate_max_s``: gaps in a component up to this long are linearly interpolated.
    ``zero_fill_max_s``: gaps in every component at once up to this long are filled
    (interpolated or zeros); longer ones end the stretch. ``reorder_s``: a gap waits for late
    records until the component's data runs this far past it. ``dead_channel_s``: a component
    this far behind the others is zero-filled so the station goes on.
    """

    interpolate_max_s: float = 0.5
    zero_fill_max_s: float = 60.0
    reorder_s: float = 10.0
    dead_channel_s: float = 45.0

    def __post_init__(self) -> None:
        if not 0 <= self.interpolate_max_s <= self.zero_fill_max_s <= MAX_FILL_S:
            raise UserError(
                f"gap policy: need 0 <= interpolate_max_s ({self.interpolate_max_s}) <= zero_fill_max_s ({self.zero_fill_max_s})"
                f" <= {MAX_FILL_S:g} (a filled gap is held in memory)"
            )
        if not 0 <= self.reorder_s < self.dead_channel_s:
            raise UserError(f"gap policy: need 0 <= reorder_s ({self.reorder_s}) < dead_channel_s ({self.dead_channel_s})")
        if not 0 < self.dead_channel_s <= 60:
            raise UserError(f"gap policy: dead_channel_s must be in (0, 60] s (got {self.dead_channel_s}) to bound memory")


@dataclass
class BufferStats:
    """What a station buffer saw, for metrics (monotonic counters)."""

    records: int = 0  # traces added
    samples_received: int = 0  # raw samples in them
    bad_records: int = 0  # dropped: unknown component, no usable rate
    nonfinite_samples: int = 0  # NaN/inf samples dropped (their gaps are filled by the gap policy)
    overlap_samples_dropped: int = 0  # repeated or late samples, at 100 Hz
    gaps_interpolated: int = 0
    gaps_zero_filled: int = 0
    stretch_breaks: int = 0  # gaps that ended a stretch
    samples_filled: int = 0  # output samples with any filled component
    rate_changes: int = 0
    dead_channel_outages: int = 0  # times a component was zero-filled for lagging the others
    segments: int = 0
    samples_out: int = 0


@dataclass
class _Piece:
    """100 Hz samples of one component: ``data[i]`` at grid index ``index + i`` (exact start ``time``)."""

    index: int
    time: float
    data: np.ndarray

    @property
    def end(self) -> int:
        return self.index + len(self.data)


@dataclass
class _Component:
    """One component slot: its 100 Hz pieces not yet handed on and its resampling run."""

    pieces: list[_Piece] = field(default_factory=list)
    seen: bool = False
    rate: float | None = None
    run: StreamingResampler | None = None
    run_start: float = 0.0  # time of the run's first input sample
    last_value: float | None = None  # last value handed on
    last_real: bool = False  # whether that value was data (not a fill)
    last_zero: bool = False  # whether that value was a zero fill
    known_end: int | None = None  # grid index after its latest data
    dead: bool = False


class StationBuffer:
    """Merges one station's records into contiguous 100 Hz [E, N, Z] segments (see the module doc)."""

    def __init__(self, key: StationKey, *, policy: GapPolicy = GapPolicy(), channels: Sequence[str] | None = None,
                 orientation: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.key = key
        self.rotation = Rotation(key, orientation)
        self.policy = policy
        self.stats = BufferStats()
        self.declared = None if channels is None else sorted({self._slot_of(c) for c in channels})
        self._components = [_Component() for _ in SLOT_NAMES]
        self._anchor: float | None = None  # time of grid index 0 in this stretch
        self._emitted: int | None = None  # grid index of the first sample not handed on
        self._first = 0  # grid index of the stretch's first sample
        self._stretch_open = True
        self._done_until: float | None = None  # time just after the last sample handed on
        self._warned: set[str] = set()

    def _slot_of(self, channel: str) -> int:
        letter = channel[-1:].upper()
        if letter not in COMPONENT_SLOT:
            raise UserError(f"station {self.key}: channel {channel!r} is not a Z, N, E, 1 or 2 component")
        return COMPONENT_SLOT[letter]

    @property
    def expected(self) -> list[int]:
        """The slots the buffer waits for: the declared components, else all three."""
        return self.declared if self.declared is not None else [0, 1, 2]

    @property
    def held_samples(self) -> int:
        """100 Hz samples per component held but not handed on (the largest component's)."""
        return max((sum(len(p.data) for p in c.pieces) for c in self._components), default=0)

    # -- input ---------------------------------------------------------------------------

    def add(self, trace: obspy.Trace) -> None:
        """Take one record or trace of this station (any order, component or length)."""
        stats = trace.stats
        self.stats.records += 1
        self.stats.samples_received += stats.npts
        letter = stats.channel[-1:].upper()
        if letter not in COMPONENT_SLOT or (self.declared is not None and COMPONENT_SLOT[letter] not in self.declared):
            self._bad(f"channel {stats.channel!r} is not one of the station's components", once=stats.channel, data_fault=False)
            return
        if not stats.npts:
            return
        try:
            rate_ratio(stats.sampling_rate)
        except ValueError as exc:
            self._bad(f"{trace.id}: {exc}")
            return
        data = np.asarray(trace.data, dtype=np.float64)
        comp = self._components[COMPONENT_SLOT[letter]]
        comp.seen = True
        self.rotation.saw(COMPONENT_SLOT[letter], stats.channel)
        finite = np.isfinite(data)
        runs = [(0, len(data))] if finite.all() else _runs(finite)
        if len(runs) != 1 or runs[0] != (0, len(data)):
            bad = len(data) - int(finite.sum())
            self.stats.nonfinite_samples += bad
            log.warning("station %s: %s from %s: %d non-finite sample(s) (NaN/inf) treated as a gap",
                        self.key, trace.id, stats.starttime, bad, extra=BAD_DATA)
        for lo, hi in runs:  # the finite runs; the gaps between them follow the gap policy
            start = stats.starttime.timestamp + lo / stats.sampling_rate
            for time, samples in self._resample(comp, start, stats.sampling_rate, data[lo:hi], trace.id):
                self._insert(comp, time, samples)

    def _bad(self, reason: str, once: str | None = None, data_fault: bool = True) -> None:
        """Count and log a dropped record (``data_fault``: its data are bad, not merely unwanted)."""
        self.stats.bad_records += 1
        if once is None or once not in self._warned:
            if once is not None:
                self._warned.add(once)
            log.warning("station %s: dropped a record: %s", self.key, reason, extra=BAD_DATA if data_fault else None)

    def _resample(self, comp: _Component, start: float, rate: float, data: np.ndarray, trace_id: str) -> list[tuple[float, np.ndarray]]:
        """100 Hz pieces ``(time, samples)`` that this record completes on its component's run."""
        out: list[tuple[float, np.ndarray]] = []
        if comp.rate is not None and rate != comp.rate:
            self.stats.rate_changes += 1
            log.warning("station %s: %s changed sampling rate from %g to %g Hz", self.key, trace_id, comp.rate, rate, extra=BAD_DATA)
            out += self._end_run(comp)
        comp.rate = rate
        if rate == SAMPLING_RATE:
            return out + [(start, data)]
        if comp.run is not None:
            offset = (start - (comp.run_start + comp.run.received / rate)) * rate  # in input samples
            if offset < -0.5:  # overlaps the run: keep what came first
                skip = int(round(-offset))
                self.stats.overlap_samples_dropped += int(round(min(skip, len(data)) * SAMPLING_RATE / rate))
                data = data[skip:]
                if not len(data):
                    return out
            elif offset > 0.5:  # a gap: the run ends here
                out += self._end_run(comp)
        if comp.run is None:
            comp.run, comp.run_start = StreamingResampler(rate), start
        first = comp.run.produced
        samples = comp.run.feed(data)
        if len(samples):
            out.append((comp.run_start + first / SAMPLING_RATE, samples))
        return out

    def _end_run(self, comp: _Component) -> list[tuple[float, np.ndarray]]:
        if comp.run is None:
            return []
        run, comp.run = comp.run, None
        first = run.produced
        tail = run.flush()
        return [(comp.run_start + first / SAMPLING_RATE, tail)] if len(tail) else []

    def _insert(self, comp: _Component, time: float, data: np.ndarray) -> None:
        """Place 100 Hz samples on the grid, keeping samples already there or handed on."""
        if self._anchor is None:
            self._anchor = time
        index = round((time - self._anchor) * SAMPLING_RATE)
        start, end = index, index + len(data)
        if self._emitted is not None and start < self._emitted:
            start = min(self._emitted, end)
        elif self._done_until is not None and time < self._done_until:  # before a new stretch: handed on already
            start = min(end, index + int(np.ceil((self._done_until - time) * SAMPLING_RATE - 0.5)))
        kept = 0
        for lo, hi in self._free_spans(comp, start, end):
            piece = _Piece(lo, time + (lo - index) / SAMPLING_RATE, data[lo - index : hi - index])
            bisect.insort(comp.pieces, piece, key=lambda p: p.index)
            kept += hi - lo
            comp.known_end = hi if comp.known_end is None else max(comp.known_end, hi)
        self.stats.overlap_samples_dropped += len(data) - kept

    @staticmethod
    def _free_spans(comp: _Component, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` no piece of ``comp`` covers."""
        spans, cursor = [], start
        for piece in comp.pieces:
            if piece.end <= cursor:
                continue
            if piece.index >= end:
                break
            if piece.index > cursor:
                spans.append((cursor, piece.index))
            cursor = max(cursor, piece.end)
        if cursor < end:
            spans.append((cursor, end))
        return spans

    # -- output --------------------------------------------------------------------------

    def pop_ready(self) -> list[Segment]:
        """Every segment no later record can change (the last data sample stays until the next shows up)."""
        return self._drain(final=False)

    def close(self) -> list[Segment]:
        """End of data: hand on everything left; the last segment has ``stretch_end=True``."""
        for comp in self._components:
            for time, samples in self._end_run(comp):
                self._insert(comp, time, samples)
        segments = self._drain(final=True)
        self._anchor, self._emitted, self._stretch_open = None, None, True
        for comp in self._components:
            comp.known_end, comp.last_value, comp.last_real, comp.last_zero, comp.dead = None, None, False, False, False
        return segments

    def _drain(self, final: bool) -> list[Segment]:
        out = []
        while (segment := self._next_segment(final)) is not None:
            out.append(segment)
            self.stats.segments += 1
            self.stats.samples_out += len(segment.data)
        return out

    def _next_segment(self, final: bool) -> Segment | None:
        comps = [self._components[s] for s in self.expected]
        held = [c for c in self._components if c.pieces]
        if not held:
            return None
        begin = self._emitted if self._emitted is not None else min(c.pieces[0].index for c in held)
        if self._emitted is None:
            self._first = begin
        known = [self._first if c.known_end is None else c.known_end for c in comps]
        lead = max(known)
        reached = [self._reached(c, begin, self._first) for c in comps]
        lagging = [final or lead - end > self.policy.dead_channel_s * SAMPLING_RATE for end in reached]
        ready = min(lead if lag else end for lag, end in zip(lagging, reached))
        stop = ready if final else ready - 1
        if stop <= begin:
            return None

        views = [self._materialise(c, begin, lead) for c in self._components]
        gap = self._long_station_gap(views, begin, stop)
        if gap is not None:
            return self._break_stretch(views, begin, *gap)
        if not final:
            self._mark_dead(lagging, lead, reached)
            stop = self._avoid_splitting_gaps(views, begin, stop)
            if stop <= begin:
                return None
        return self._emit(views, begin, stop, stretch_end=final)

    def _reached(self, comp: _Component, begin: int, first: int) -> int:
        """How far ``comp`` has data with no gap still open to late records (a gap is settled once
        the component's data runs ``reorder_s`` past it); ``first`` for one without data yet."""
        if not comp.pieces:
            return first if comp.known_end is None else comp.known_end
        cursor = begin
        for piece in comp.pieces:
            if piece.index > cursor and comp.known_end - piece.index < self.policy.reorder_s * SAMPLING_RATE:
                return cursor
            cursor = max(cursor, piece.end)
        return cursor

    def _mark_dead(self, lagging: list[bool], lead: int, known: list[int]) -> None:
        """Log and count each expected component that starts (or stops) being zero-filled for lagging behind."""
        for slot, lag, end in zip(self.expected, lagging, known):
            comp = self._components[slot]
            if lag and not comp.dead:
                self.stats.dead_channel_outages += 1
                log.warning(
                    "station %s: no %s data for %.0f s while the others go on; zero-filling it",
                    self.key, SLOT_NAMES[slot], (lead - end) / SAMPLING_RATE,
                )
            comp.dead = lag

    def _materialise(self, comp: _Component, begin: int, end: int) -> np.ndarray:
        view = np.full(end - begin, np.nan)
        for piece in comp.pieces:
            if piece.index >= end:
                break
            view[piece.index - begin : piece.end - begin] = piece.data
        return view

    def _long_station_gap(self, views: list[np.ndarray], begin: int, stop: int) -> tuple[int, int] | None:
        """The first run of rows in ``[begin, stop)`` where no component has data and that is too long to fill."""
        empty = np.all(np.isnan(np.stack(views)), axis=0)
        for lo, hi in _runs(empty):
            if lo >= stop - begin:
                break
            if hi - lo > self.policy.zero_fill_max_s * SAMPLING_RATE:
                return begin + lo, begin + hi
        return None

    def _avoid_splitting_gaps(self, views: list[np.ndarray], begin: int, stop: int) -> int:
        """Pull ``stop`` back to the start of any interpolable gap it would cut (the fill needs both ends)."""
        limit = self.policy.interpolate_max_s * SAMPLING_RATE
        for slot in self.expected:
            if self._components[slot].dead:
                continue
            for lo, hi in _runs(np.isnan(views[slot])):
                if begin + lo < stop < begin + hi and hi < len(views[slot]) and hi - lo <= limit:
                    stop = begin + lo
        return stop

    def _break_stretch(self, views: list[np.ndarray], begin: int, gap_lo: int, gap_hi: int) -> Segment:
        """Hand on the data before a long gap as the end of its stretch; start a new stretch after it."""
        segment = self._emit(views, begin, gap_lo, stretch_end=True)  # gap_lo > begin: the row before a gap is held
        self.stats.stretch_breaks += 1
        log.info("station %s: %.1f s gap in every component ends the stretch", self.key, (gap_hi - gap_lo) / SAMPLING_RATE)
        later = [p for c in self._components for p in c.pieces]
        self._anchor = min(later, key=lambda p: p.index).time
        for comp in self._components:
            for piece in comp.pieces:
                piece.index = round((piece.time - self._anchor) * SAMPLING_RATE)
            comp.known_end = max((p.end for p in comp.pieces), default=None)
            comp.last_value, comp.last_real, comp.last_zero, comp.dead = None, False, False, False
        self._emitted, self._stretch_open = None, True
        return segment

    def _emit(self, views: list[np.ndarray], begin: int, stop: int, stretch_end: bool) -> Segment:
        n = stop - begin
        out = np.zeros((n, 3), dtype=np.float32)
        filled = np.zeros(n, dtype=bool)
        blind = np.zeros(n, dtype=bool)
        for slot, comp in enumerate(self._components):
            counted = comp.seen or (self.declared is not None and slot in self.declared)
            if not counted and not comp.pieces:
                continue
            values, fill, zeroed = self._fill(comp, views[slot], n)
            out[:, slot] = values
            if counted:
                filled |= fill
                blind |= zeroed
            comp.pieces = self._drop_before(comp.pieces, stop)
            comp.last_value, comp.last_real = float(values[-1]), not fill[-1]
        segment = Segment(
            station=self.key,
            start=self._anchor + begin / SAMPLING_RATE,
            data=self.rotation.apply(out),
            stretch_start=self._stretch_open,
            stretch_end=stretch_end,
            filled=int(filled.sum()),
            blind=blind if blind.any() else None,
        )
        self.stats.samples_filled += segment.filled
        self._emitted, self._stretch_open = stop, False
        self._done_until = segment.end
        return segment

    def _fill(self, comp: _Component, view: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first ``n`` values of ``view`` with its gaps filled, which of them were filled, and
        which mark a zero-filled gap's edges for blinding (``Segment.blind``): every zero of a gap
        whose data after it is already here, the first zero of one whose end is not (a dead channel)."""
        values = view.copy()
        missing = np.isnan(values)
        zeroed = np.zeros(len(values), dtype=bool)
        zero = np.zeros(len(values), dtype=bool)
        if n and not missing[0] and comp.last_zero:  # data again after zeros handed on before
            zeroed[0] = True
        limit = self.policy.interpolate_max_s * SAMPLING_RATE
        for lo, hi in _runs(missing):
            if lo >= n:
                break
            left = values[lo - 1] if lo > 0 else (comp.last_value if comp.last_real else None)
            right = values[hi] if hi < len(values) else None
            if left is not None and right is not None and hi - lo <= limit:
                values[lo:hi] = left + (right - left) * np.arange(1, hi - lo + 1) / (hi - lo + 1)
                self.stats.gaps_interpolated += int(comp.seen)
            else:
                values[lo:hi] = 0.0
                zero[lo:hi] = True
                self.stats.gaps_zero_filled += int(comp.seen and (lo > 0 or comp.last_real or comp.last_value is None))
                if right is not None:
                    zeroed[lo:hi] = True
                elif lo > 0 or comp.last_real:
                    zeroed[lo] = True
        comp.last_zero = bool(n and zero[n - 1])
        return values[:n], missing[:n], zeroed[:n]

    @staticmethod
    def _drop_before(pieces: list[_Piece], stop: int) -> list[_Piece]:
        kept = []
        for piece in pieces:
            if piece.end <= stop:
                continue
            if piece.index < stop:
                cut = stop - piece.index
                piece = _Piece(stop, piece.time + cut / SAMPLING_RATE, piece.data[cut:])
            kept.append(piece)
        return kept


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[lo, hi)`` of every run of True in a boolean array."""
    if not mask.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))
