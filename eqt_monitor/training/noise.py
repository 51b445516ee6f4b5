"""Noise windows for training and testing: loose ``.npy`` windows, and quiet stretches of continuous data.

The quiet-window rule (no model involved, deterministic):

1. each station's three channels (``?HE``/``?H1`` → E, ``?HN``/``?H2`` → N, ``?HZ`` → Z) are read,
   merged, and cut into non-overlapping 60 s windows on a grid from the first common sample;
   windows with a gap on any channel are dropped;
2. every channel is band-passed 1–45 Hz (the monitor's filter); a recursive STA/LTA (STA 1 s,
   LTA 30 s) is taken per channel, its first LTA length discarded;
3. a window is *quiet* when the STA/LTA of every channel stays below ``STA_LTA_MAX`` (2.0) over
   the window and ``MARGIN_S`` (30 s) either side, and the filtered peak amplitude over the same
   span stays below ``PEAK_FACTOR`` (8) × the station's median window RMS — which rejects the
   coda of a large event, where the STA/LTA has already fallen;
4. at most ``max_per_station`` quiet windows are kept per station, evenly spaced in time
   (``numpy.linspace`` over the quiet ones, so the same data gives the same windows).

Windows are stored demeaned, unfiltered, as the labelled traces are.
"""
from __future__ import annotations

import glob
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eqt_monitor.errors import UserError
from eqt_monitor.records import SAMPLING_RATE, WINDOW_SAMPLES
from eqt_monitor.training.stead import NOISE, SteadTrace, station_from_name

log = logging.getLogger(__name__)

STA_S, LTA_S = 1.0, 30.0
STA_LTA_MAX = 2.0
MARGIN_S = 30.0
PEAK_FACTOR = 8.0
COMPONENTS = {"E": 0, "1": 0, "N": 1, "2": 1, "Z": 2}


def npy_noise(folder: str | Path, source: str = "") -> Iterator[SteadTrace]:
    """Every ``(6000, 3)`` array in ``folder`` (``.npy`` with or without the extension) as a noise trace."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("%s: not a .npy array (%s); skipped", path, exc)
            continue
        if data.shape != (WINDOW_SAMPLES, 3) or not np.isfinite(data).all():
            log.warning("%s: shape %s or non-finite samples, expected (6000, 3); skipped", path, data.shape)
            continue
        name = path.stem if path.suffix == ".npy" else path.name
        yield SteadTrace(name=name, data=data.astype(np.float32), category=NOISE, station=station_from_name(name), source=source)


def quiet_starts(data: np.ndarray, step: int = WINDOW_SAMPLES) -> np.ndarray:
    """Start samples of the quiet windows of one station's gap-free ``(n, 3)`` data, by the rule above."""
    from obspy.signal.trigger import recursive_sta_lta

    from eqt_monitor.pipeline.windows import bandpass

    sta, lta = int(STA_S * SAMPLING_RATE), int(LTA_S * SAMPLING_RATE)
    margin = int(MARGIN_S * SAMPLING_RATE)
    filtered = bandpass(data - data.mean(axis=0), axis=0)
    ratio = np.max([recursive_sta_lta(np.ascontiguousarray(filtered[:, c], dtype=np.float64), sta, lta) for c in range(3)], axis=0)
    peak = np.max(np.abs(filtered), axis=1)
    starts = np.arange(lta + margin, len(data) - WINDOW_SAMPLES - margin + 1, step)
    if not len(starts):
        return starts
    rms = np.array([np.sqrt(np.mean(filtered[s : s + WINDOW_SAMPLES] ** 2)) for s in starts])
    limit = PEAK_FACTOR * np.median(rms)
    quiet = [
        s
        for s in starts
        if ratio[s - margin : s + WINDOW_SAMPLES + margin].max() < STA_LTA_MAX
        and peak[s - margin : s + WINDOW_SAMPLES + margin].max() < limit
    ]
    return np.asarray(quiet, dtype=int)


def _stations(files: list[str], start: str | None, end: str | None):
    import obspy

    stream = obspy.Stream()
    for path in files:
        stream += obspy.read(path, starttime=obspy.UTCDateTime(start) if start else None, endtime=obspy.UTCDateTime(end) if end else None)
    stream.merge(method=1, fill_value=None)  # gaps stay masked
    by_station: dict[str, list] = {}
    for tr in stream:
        if tr.stats.sampling_rate != SAMPLING_RATE or tr.stats.channel[-1:] not in COMPONENTS:
            log.warning("%s: not 100 Hz or not an E/N/Z/1/2 channel; skipped", tr.id)
            continue
        by_station.setdefault(f"{tr.stats.network}.{tr.stats.station}", []).append(tr)
    return by_station


def continuous_noise(
    patterns: list[str],
    *,
    source: str = "",
    max_per_station: int = 30,
    start: str | None = None,
    end: str | None = None,
) -> Iterator[SteadTrace]:
    """Quiet 60 s noise windows (see the module's rule) from the miniSEED files matching ``patterns``."""
    files = sorted({f for pattern in patterns for f in glob.glob(str(pattern))})
    if not files:
        raise UserError(f"no miniSEED files match {', '.join(map(str, patterns))}")
    for station, traces in sorted(_stations(files, start, end).items()):
        chans = {COMPONENTS[tr.stats.channel[-1]]: tr for tr in traces}
        if len(chans) != 3:
            log.warning("%s: not three components (%s); skipped", station, sorted(tr.id for tr in traces))
            continue
        t0 = max(tr.stats.starttime for tr in chans.values())
        t1 = min(tr.stats.endtime for tr in chans.values())
        cut = [chans[c].slice(t0, t1) for c in range(3)]
        n = min(len(tr.data) for tr in cut)
        data = np.ma.stack([np.ma.masked_invalid(np.ma.asarray(tr.data[:n], dtype=np.float64)) for tr in cut], axis=1)
        mask = np.ma.getmaskarray(data).any(axis=1)
        starts = [s for s in quiet_starts(np.ma.filled(data, 0.0)) if not mask[max(s - int(MARGIN_S * SAMPLING_RATE), 0) : s + WINDOW_SAMPLES].any()]
        if len(starts) > max_per_station:
            starts = [starts[i] for i in np.linspace(0, len(starts) - 1, max_per_station).round().astype(int)]
        log.info("%s: %d quiet windows kept", station, len(starts))
        net, sta = station.split(".")
        for s in starts:
            window = np.asarray(data[s : s + WINDOW_SAMPLES].filled(0.0))
            stamp = (t0 + s / SAMPLING_RATE).strftime("%Y%m%d%H%M%S")
            yield SteadTrace(
                name=f"{sta}.{net}_{stamp}_NO",
                data=(window - window.mean(axis=0)).astype(np.float32),
                category=NOISE,
                station=station,
                source=source,
            )
