"""Streaming polyphase FIR resampling of one continuous run of samples to 100 Hz.

The anti-aliasing filter is the linear-phase Kaiser-windowed low-pass that
``scipy.signal.resample_poly`` designs (cutoff at the lower Nyquist, 10 zero crossings
each side, beta 5). Output sample ``m`` is at ``t0 + m / 100`` (the filter is centred, so
there is no delay), where ``t0`` is the time of the run's first input sample. An output is
computed only once every input it depends on has arrived, always with the same arithmetic,
so the result does not depend on how the input is chunked. The run's edges are extended
with its first and last sample (no step from zero at the start of the data).
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import firwin

from eqt_monitor.records import SAMPLING_RATE

KAISER_BETA = 5.0
ZERO_CROSSINGS = 10  # filter half-length, in units of the larger of up and down


@lru_cache(maxsize=64)
def rate_ratio(rate: float, target: float = SAMPLING_RATE) -> tuple[int, int]:
    """``(up, down)`` with ``rate * up / down == target``; ``ValueError`` for a rate with no small exact ratio."""
    if not rate > 0:
        raise ValueError(f"sampling rate {rate!r} is not positive")
    ratio = Fraction(target / rate).limit_denominator(1000)
    if abs(rate * ratio.numerator / ratio.denominator - target) > 1e-9 * target:
        raise ValueError(f"sampling rate {rate!r} Hz has no exact small ratio to {target:g} Hz")
    return ratio.numerator, ratio.denominator


def design_filter(up: int, down: int) -> np.ndarray:
    """The anti-aliasing low-pass for resampling by ``up / down``, scaled by ``up`` (unit passband gain)."""
    widest = max(up, down)
    return firwin(2 * ZERO_CROSSINGS * widest + 1, 1.0 / widest, window=("kaiser", KAISER_BETA)) * up


class StreamingResampler:
    """Resamples one continuous run from ``rate`` to 100 Hz as its samples arrive.

    ``feed(x)`` returns the outputs that ``x`` completed, ``flush()`` the rest at the run's
    end; ``produced`` counts outputs so far (the next output's index ``m``).
    """

    def __init__(self, rate: float, target: float = SAMPLING_RATE) -> None:
        self.rate = rate
        self.up, self.down = rate_ratio(rate, target)
        taps = design_filter(self.up, self.down)
        self.delay = (len(taps) - 1) // 2  # in the up-sampled domain
        self.width = -(-len(taps) // self.up)  # input samples under the filter
        phases = np.zeros((self.up, self.width))
        for p in range(self.up):
            phase = taps[p :: self.up]
            phases[p, : len(phase)] = phase
        self._phases = phases[:, ::-1].copy()  # row p, column j multiplies x[q - (width - 1) + j]
        self._history = np.empty(0)  # inputs from global index self._first on
        self._first = 0
        self._received = 0
        self.produced = 0

    @property
    def received(self) -> int:
        """Input samples fed so far."""
        return self._received

    @property
    def identity(self) -> bool:
        """Whether the run is already at the target rate (samples pass through unchanged)."""
        return self.up == self.down == 1

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Append input samples; return the float64 outputs they completed."""
        x = np.asarray(x, dtype=np.float64)
        if self.identity:
            self.produced += len(x)
            self._received += len(x)
            return x.copy()
        if not len(x):
            return np.empty(0)
        if self._received == 0:  # extend the run's start with its first sample
            self._history = np.full(self.width - 1, x[0])
            self._first = -(self.width - 1)
        self._history = np.concatenate([self._history, x])
        self._received += len(x)
        last = (self._received * self.up - 1 - self.delay) // self.down  # last output whose inputs all arrived
        return self._compute(last)

    def flush(self) -> np.ndarray:
        """The outputs up to the run's last input time, extending the run with its last sample."""
        if self.identity or self._received == 0:
            return np.empty(0)
        self._history = np.concatenate([self._history, np.full(self.width, self._history[-1])])
        last = ((self._received - 1) * self.up) // self.down
        return self._compute(last)

    def _compute(self, last: int) -> np.ndarray:
        m = np.arange(self.produced, last + 1)
        if not len(m):
            return np.empty(0)
        n = m * self.down + self.delay
        q, p = n // self.up, n % self.up
        windows = sliding_window_view(self._history, self.width)[q - (self.width - 1) - self._first]
        y = (windows * self._phases[p]).sum(axis=1)
        self.produced = last + 1
        keep_from = ((self.produced * self.down + self.delay) // self.up) - (self.width - 1)
        drop = keep_from - self._first
        if drop > 0:
            self._history = self._history[drop:]
            self._first = keep_from
        return y
