"""EqT's data augmentations, each applied at its documented rate with an explicit random generator.

Rates default to EQTransformer's ``trainer`` defaults (shift 0.99, second event 0.6, noise 0.3,
channel drop 0.5, gaps 0.2). Adding noise, a second event or dropping channels of an earthquake
trace needs SNR ≥ 10 dB on every channel, as in EqT.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eqt_monitor.records import WINDOW_SAMPLES
from eqt_monitor.training.labels import Event, detection_end
from eqt_monitor.training.stead import SteadTrace

MIN_SNR_DB = 10.0


@dataclass(frozen=True)
class AugmentationRates:
    """Probability of each augmentation (0 disables it)."""

    shift_event: float = 0.99
    add_event: float = 0.6
    add_noise: float = 0.3
    drop_channel: float = 0.5
    add_gap: float = 0.2


def _clean(trace: SteadTrace) -> bool:
    snr = np.asarray(trace.snr_db, dtype=float)
    return bool(np.all(np.nan_to_num(snr, nan=-np.inf) >= MIN_SNR_DB))


def event_end(trace: SteadTrace) -> int | None:
    """Where the event's signal ends: the coda end label, else the detection label's end."""
    if trace.coda_end is not None:
        return min(trace.coda_end, WINDOW_SAMPLES)
    if trace.p is not None and trace.s is not None:
        return detection_end(trace.p, trace.s) + 1
    return None


def shift_event(data: np.ndarray, p: int, s: int, end: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int, int]:
    """Rotate the window later by 1 … (6000 − end − 1) samples so the event stays inside. Returns shifted data, P, S, end."""
    room = WINDOW_SAMPLES - end
    if room <= 1:
        return data, p, s, end
    n = int(rng.integers(1, room))
    return np.roll(data, n, axis=0), p + n, s + n, end + n


def add_event(data: np.ndarray, p: int, s: int, end: int, rng: np.random.Generator) -> tuple[np.ndarray, Event | None]:
    """Add a scaled copy of the event (from its P onwards) after its coda; returns the data and the copy's (P, S)."""
    sp = s - p
    last_start = WINDOW_SAMPLES - sp - 21
    if last_start - end <= 20:
        return data, None
    start = int(rng.integers(end, last_start))
    scale = 1.0 / int(rng.integers(1, 10))
    out = data.copy()
    length = WINDOW_SAMPLES - start
    piece = data[p : p + length]
    out[start : start + len(piece)] += piece * scale
    return out, (start, start + sp)


def add_noise(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise to each channel with a std of 1–15 % of that channel's maximum."""
    scale = rng.uniform(0.01, 0.15, size=3) * np.max(data, axis=0)
    return data + rng.normal(0.0, 1.0, size=data.shape) * np.abs(scale)


def drop_channels(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero a random non-empty subset of channels (keeping ≥1) and scale the rest by 3 / channels kept."""
    keep = rng.integers(0, 2, size=3).astype(bool)
    if not keep.any():
        return data
    out = data.copy()
    out[:, ~keep] = 0.0
    live = np.count_nonzero(np.max(np.abs(out), axis=0))
    if live:
        out *= 3.0 / live
    return out


def add_gap(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero a random stretch starting in the first 40 s and ending before 55 s (a filled data gap)."""
    start = int(rng.integers(0, 4000))
    end = int(rng.integers(start, 5500))
    out = data.copy()
    out[start:end] = 0.0
    return out


def augment(
    trace: SteadTrace, rng: np.random.Generator, rates: AugmentationRates, *, full: bool = True
) -> tuple[np.ndarray, list[Event]]:
    """One augmented copy of a trace: (6000, 3) float32 data and its events' (P, S) samples.

    ``full=False`` only shifts events at half the rate (the un-augmented half of EqT's batches).
    Noise traces get channel drops and gaps and no events; earthquake traces a shift, a second
    event, noise and channel drops.
    """
    data = np.asarray(trace.data, dtype=np.float64).copy()
    if not trace.is_earthquake:
        if full and rng.random() < rates.drop_channel:
            data = drop_channels(data, rng)
        if full and rng.random() < rates.add_gap:
            data = add_gap(data, rng)
        return data.astype(np.float32), []
    p, s, end = trace.p, trace.s, event_end(trace)
    events: list[Event] = [(p, s)]
    if p is None or s is None or end is None:
        return data.astype(np.float32), events
    shift_rate = rates.shift_event if full else rates.shift_event / 2
    if rng.random() < shift_rate:
        data, p, s, end = shift_event(data, p, s, end, rng)
        events = [(p, s)]
    if not full:
        return data.astype(np.float32), events
    clean = _clean(trace)
    if clean and rng.random() < rates.add_event:
        data, second = add_event(data, p, s, end, rng)
        if second is not None:
            events.append(second)
    if clean and rng.random() < rates.add_noise:
        data = add_noise(data, rng)
    if clean and rng.random() < rates.drop_channel:
        data = drop_channels(data, rng)
    return data.astype(np.float32), events
