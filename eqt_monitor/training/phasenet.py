"""NCEDC ``.npz`` traces (PhaseNet's ``waveform.csv``: ``fname,itp,its``; DeepDenoiser's
``train.csv``: ``fname,itp``, P only) as STEAD-format windows.

Each trace is 9001 × 3 samples at 100 Hz with P at sample 3000; a 6000-sample window is cut at a
random offset (fixed seed) so the P arrival lands anywhere in [5 s, 30 s] of the window and the S
arrival, when there is one, inside it. A P-only trace keeps ``s = None`` (no detection or S label).
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eqt_monitor.errors import UserError
from eqt_monitor.records import WINDOW_SAMPLES
from eqt_monitor.training.labels import detection_end
from eqt_monitor.training.stead import EARTHQUAKE, SteadTrace, station_from_name

log = logging.getLogger(__name__)

P_RANGE = (500, 3000)  # where the P arrival may land in the cut window, in samples
SNR_WINDOW = 500  # samples of noise before and signal after P for the SNR estimate


def snr_db(data: np.ndarray, p: int, window: int = SNR_WINDOW) -> np.ndarray:
    """Per-channel SNR in dB: power in ``window`` samples after P over the power before it (NaN for a dead channel)."""
    noise = data[max(p - window, 0) : p].astype(np.float64)
    signal = data[p : p + window].astype(np.float64)
    noise_power = np.mean((noise - noise.mean(axis=0)) ** 2, axis=0)
    signal_power = np.mean((signal - signal.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10 * np.log10(signal_power / noise_power)
    return np.where(np.isfinite(out), out, np.nan)


def phasenet_windows(csv_path: str | Path, npz_dir: str | Path, seed: int = 0, source: str = "") -> Iterator[SteadTrace]:
    """One labelled STEAD-style window per trace listed in ``csv_path`` (``fname,itp[,its]``), tagged with ``source``."""
    csv_path, npz_dir = Path(csv_path), Path(npz_dir)
    rng = np.random.default_rng(seed)
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"fname", "itp"} <= set(reader.fieldnames):
            raise UserError(f"{csv_path}: needs columns fname, itp (and its, when S is picked)")
        rows = list(reader)
    seen: set[str] = set()
    for row in rows:
        offset_draw = int(rng.integers(P_RANGE[0], P_RANGE[1] + 1))
        path = npz_dir / row["fname"]
        if row["fname"] in seen:  # deepdenoiser_ncedc lists one file twice (HN and HH channels)
            log.warning("%s: listed again in %s; the repeat is skipped", path, csv_path)
            continue
        seen.add(row["fname"])
        try:
            with np.load(path) as npz:
                data = np.asarray(npz["data"], dtype=np.float32)
            itp = int(row["itp"])
            its = int(row["its"]) if (row.get("its") or "").strip() else None
        except (OSError, KeyError, ValueError) as exc:
            log.warning("%s: cannot read trace (%s); skipped", path, exc)
            continue
        start = itp - offset_draw
        last = itp if its is None else its
        if data.ndim != 2 or data.shape[1] != 3 or start < 0 or start + WINDOW_SAMPLES > len(data) or last - start >= WINDOW_SAMPLES:
            log.warning("%s: P at %d, S at %s in %s samples cannot fit a 6000-sample window; skipped", path, itp, its, data.shape)
            continue
        window = data[start : start + WINDOW_SAMPLES]
        p, s = itp - start, None if its is None else its - start
        stem = Path(row["fname"]).stem
        yield SteadTrace(
            name=stem + "_EV",
            data=window,
            category=EARTHQUAKE,
            p=p,
            s=s,
            coda_end=None if s is None else detection_end(p, s) + 1,
            snr_db=snr_db(window, p),
            station=station_from_name(stem),
            source=source,
        )
