"""The absolute-time window grid and the model's input preprocessing.

A *stretch* is continuous 100 Hz data (see ``eqt_monitor.records.Segment``); positions inside it
are sample indices counted from its first sample. Windows are ``WINDOW_SAMPLES`` long and come
from three rules:

- grid windows start at the samples nearest the times that are integer multiples of
  ``step / 100`` s since the epoch, so the same data is cut the same way however it was
  chunked or wherever a replay started;
- a *start window* is aligned to the stretch's first sample and an *end window* to its last,
  so the first and the last seconds of every stretch are predicted with an unblinded edge;
- a stretch shorter than a window gets one zero-padded window.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from obspy.signal.invsim import cosine_taper
from scipy.signal import iirfilter, sosfilt

from eqt_monitor.records import SAMPLING_RATE, WINDOW_SAMPLES

FREQMIN = 1.0  # Hz, EqT's bandpass
FREQMAX = 45.0
CORNERS = 2
TAPER_FRACTION = 0.001  # EqT tapers 0.1 % of the data at each end after filtering


def stretch_origin(start: float) -> int:
    """Absolute sample number of a stretch's first sample: ``start * 100`` rounded to the nearest
    integer (halves up). Grid window ``k`` then starts at stretch index ``k * step - origin``."""
    return math.ceil(start * SAMPLING_RATE - 0.5)


def grid_starts(origin: int, step: int, lo: int, hi: int) -> np.ndarray:
    """Stretch indices ``i >= lo`` of the grid windows that fit in samples ``[0, hi)``
    (``i + WINDOW_SAMPLES <= hi``), in increasing order."""
    first = lo + (-(origin + lo)) % step  # smallest i >= lo with (i + origin) % step == 0
    last = hi - WINDOW_SAMPLES
    if first > last:
        return np.empty(0, dtype=np.int64)
    return np.arange(first, last + 1, step, dtype=np.int64)


@functools.cache
def _bandpass_sos() -> np.ndarray:
    """The filter ObsPy's ``bandpass`` designs on every call, designed once."""
    nyquist = 0.5 * SAMPLING_RATE
    return iirfilter(CORNERS, [FREQMIN / nyquist, FREQMAX / nyquist], btype="band", ftype="butter", output="sos")


def bandpass(data: np.ndarray, axis: int) -> np.ndarray:
    """EqT's filter: Butterworth bandpass 1–45 Hz, 2 corners, zero phase (forward and backward
    pass with zero initial state, as ObsPy's ``Trace.filter``), along ``axis``; float64."""
    sos = _bandpass_sos()
    forward = np.flip(sosfilt(sos, np.asarray(data, dtype=np.float64), axis=axis), axis=axis)
    return np.flip(sosfilt(sos, forward, axis=axis), axis=axis)


def _window_taper() -> np.ndarray:
    """ObsPy's ``Trace.taper(max_percentage=0.001, type='cosine')`` for one window, as a vector."""
    half = int(TAPER_FRACTION * WINDOW_SAMPLES)
    sides = cosine_taper(2 * half + 1, p=1.0)
    return np.concatenate([sides[:half], np.ones(WINDOW_SAMPLES - 2 * half), sides[-half:]])


_TAPER = _window_taper()


def preprocess(batch: np.ndarray) -> np.ndarray:
    """Model input from raw windows ``(n, 6000, 3)``: per window and channel demean, bandpass
    1–45 Hz, taper the outer 6 samples, demean and divide by the standard deviation (a channel
    with std 0 stays zeros). Each window depends only on its own samples. Returns float32."""
    if batch.ndim != 3 or batch.shape[1:] != (WINDOW_SAMPLES, 3):
        raise ValueError(f"expected windows of shape (n, {WINDOW_SAMPLES}, 3), got {batch.shape}")
    x = np.array(batch.transpose(0, 2, 1), dtype=np.float64, order="C")  # filter along contiguous rows
    x -= x.mean(axis=-1, keepdims=True)
    x = bandpass(x, axis=-1)
    x *= _TAPER
    return normalize(x.transpose(0, 2, 1))


def normalize(data: np.ndarray) -> np.ndarray:
    """Demean each channel and divide by its std (EqT's ``std`` mode); flat channels stay zero.
    Works on one window ``(6000, 3)`` or a batch ``(n, 6000, 3)``; returns float32."""
    x = np.asarray(data, dtype=np.float64)
    x = x - x.mean(axis=-2, keepdims=True)
    std = x.std(axis=-2, keepdims=True)
    std[std == 0] = 1.0
    return (x / std).astype(np.float32)
