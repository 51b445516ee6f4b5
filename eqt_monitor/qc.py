"""Data quality of archived stations: hourly noise PSDs (ObsPy ``PPSD``, one PNG per channel) and
per-channel numbers: PSD in period bands against the NLNM/NHNM, clipping, miniSEED timing quality
and clock-lock flags, flat (dead) hours.

A channel whose inventory has a response gets its PSD in dB rel. 1 (m/s²)²/Hz and a comparison with
Peterson's models; one without (no StationXML, as for chile_2014) is processed by ``PPSD`` with
``special_handling="ringlaser"`` and a sensitivity of 1: no response removal and no
differentiation, so its PSD is in dB rel. 1 count²/Hz and the NLNM/NHNM columns are ``None``.
"""
from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import obspy  # noqa: E402
from obspy.io.mseed.util import get_flags  # noqa: E402
from obspy.signal.spectral_estimation import PPSD, get_nhnm, get_nlnm  # noqa: E402

from eqt_monitor.records import StationKey  # noqa: E402
from eqt_monitor.sources import open_source  # noqa: E402
from eqt_monitor.sources.archive import record_length  # noqa: E402
from eqt_monitor.sources.base import channel_pattern  # noqa: E402

log = logging.getLogger(__name__)

BANDS_S: tuple[tuple[float, float], ...] = ((0.1, 1.0), (1.0, 10.0), (10.0, 100.0))
COUNTS_DB_BINS = (-50.0, 250.0, 1.0)  # PSD in counts²/Hz spans a higher range than in (m/s²)²/Hz
HOUR_S = 3600.0
PIECE_S = 6 * HOUR_S  # data read and measured at a time (plus one PSD segment): memory is bounded by this
FLAT = {"sensitivity": 1.0, "gain": 1.0, "poles": [], "zeros": []}  # no response: counts as they are


@dataclass
class QCSettings:
    """How ``qc`` measures: PPSD segment length, clip level (None: the data type's range), flat limit."""

    ppsd_length: float = HOUR_S
    clip_counts: float | None = None
    flat_std_counts: float = 0.5  # an hour whose standard deviation is at most this is flat (dead)
    bands: tuple[tuple[float, float], ...] = BANDS_S


@dataclass
class BandLevel:
    """Median over the PSD segments of the mean PSD in one period band (dB), and its margins to the models."""

    period_s: tuple[float, float]
    psd_db: float | None
    above_nlnm_db: float | None = None
    below_nhnm_db: float | None = None


@dataclass
class ChannelQuality:
    """One channel's quality numbers over the span."""

    channel: str
    unit: str  # "acceleration" (response removed) or "counts"
    segments: int = 0
    bands: list[BandLevel] = field(default_factory=list)
    clip_counts: float | None = None
    clipped_samples: int = 0
    max_abs_counts: float | None = None
    timing_quality_median: float | None = None
    timing_quality_min: float | None = None
    clock_locked_percent: float | None = None
    records: int = 0
    flat_hours: list[str] = field(default_factory=list)
    empty_hours: list[str] = field(default_factory=list)
    png: str | None = None


def clip_level(trace: obspy.Trace, configured: float | None) -> float | None:
    """The clip level in counts: ``configured``, else the data type's largest value (None for floats)."""
    if configured is not None:
        return float(configured)
    if np.issubdtype(trace.data.dtype, np.integer):
        return float(np.iinfo(trace.data.dtype).max)
    return None


def band_levels(ppsd: PPSD, bands: Sequence[tuple[float, float]], with_models: bool) -> list[BandLevel]:
    """Each band's PSD (median over segments of the band mean, dB) and, for response-corrected data,
    its distance above the NLNM and below the NHNM (mean of the models over the same periods)."""
    periods = np.asarray(ppsd.period_bin_centers)
    values = np.asarray(ppsd.psd_values) if ppsd.psd_values else np.empty((0, len(periods)))
    nlnm_p, nlnm_db = get_nlnm()
    nhnm_p, nhnm_db = get_nhnm()
    out = []
    for lo, hi in bands:
        inside = (periods >= lo) & (periods <= hi)
        if not inside.any() or not len(values):
            out.append(BandLevel((lo, hi), None))
            continue
        level = round(float(np.median(values[:, inside].mean(axis=1))), 2)
        if not with_models:
            out.append(BandLevel((lo, hi), level))
            continue
        low = float(np.interp(np.log10(periods[inside]), np.log10(nlnm_p), nlnm_db).mean())
        high = float(np.interp(np.log10(periods[inside]), np.log10(nhnm_p), nhnm_db).mean())
        out.append(BandLevel((lo, hi), level, round(level - low, 2), round(high - level, 2)))
    return out


def _hours(start: float, end: float) -> list[tuple[float, float]]:
    first = math.floor(start / HOUR_S) * HOUR_S
    return [(t, min(t + HOUR_S, end)) for t in np.arange(first, end, HOUR_S).tolist() if min(t + HOUR_S, end) > max(t, start)]


def _flat_and_empty(traces: obspy.Stream, start: float, end: float, flat_std: float) -> tuple[list[str], list[str]]:
    flat, empty = [], []
    for lo, hi in _hours(start, end):
        piece = traces.slice(obspy.UTCDateTime(lo), obspy.UTCDateTime(hi))
        data = np.concatenate([tr.data.astype(np.float64) for tr in piece]) if len(piece) else np.empty(0)
        label = obspy.UTCDateTime(lo).strftime("%Y-%m-%dT%H:00")
        if not len(data):
            empty.append(label)
        elif float(np.std(data)) <= flat_std:
            flat.append(label)
    return flat, empty


def _timing(files: Sequence[Path], start: float, end: float, q: ChannelQuality) -> None:
    """Blockette 1001 timing quality and the clock-locked I/O flag from the channel's miniSEED files.

    The clock-locked share is of records (``get_flags``' counts summed over the files), not ObsPy's
    percentage of the requested window, which each file's call reports for its own part only (two
    day files covering half a span each would read 50 % for a locked clock) and a gap lowers."""
    values, locked, records = [], 0, 0
    for path in files:
        flags = get_flags(str(path), starttime=obspy.UTCDateTime(start), endtime=obspy.UTCDateTime(end),
                          io_flags=True, activity_flags=False, data_quality_flags=False, timing_quality=True)
        records += int(flags["record_count"])
        locked += int(flags["io_and_clock_flags_counts"]["clock_locked"])
        tq = flags.get("timing_quality") or {}
        values.extend(np.asarray(tq.get("all_values", []), dtype=float).tolist())
        _warn_if_cut_short(path)
    q.records = records
    if records:
        q.clock_locked_percent = round(100.0 * locked / records, 2)
    if values:
        q.timing_quality_median, q.timing_quality_min = float(np.median(values)), float(np.min(values))


_CUT_SHORT: set[tuple[Path, int]] = set()  # (file, size) already warned about


def _warn_if_cut_short(path: Path) -> None:
    """``get_flags`` stops at the first record it cannot parse, silently: walk the file's record
    headers as it does and warn once (per file and size) when they end before the file does."""
    raw = path.read_bytes()
    pos = 0
    while pos < len(raw) and (length := record_length(raw, pos)) is not None:
        pos += length
    if pos < len(raw) and (path, len(raw)) not in _CUT_SHORT:
        _CUT_SHORT.add((path, len(raw)))
        log.warning("%s: no miniSEED record readable at byte %d of %d: timing quality and clock flags cover only "
                    "the records before it", path, pos, len(raw))


class _ChannelMeter:
    """One channel's numbers, fed a piece of its data at a time (``add``) and read out by ``result``."""

    def __init__(self, first: obspy.Trace, inventory: obspy.Inventory | None, settings: QCSettings) -> None:
        seed_id = first.id
        response = None
        if inventory is not None:
            try:
                response = inventory.get_response(seed_id, first.stats.starttime)
            except Exception:  # noqa: BLE001  (ObsPy raises plain Exception for a missing channel)
                response = None
        self.q = ChannelQuality(seed_id, "acceleration" if response is not None else "counts")
        if response is None:
            log.warning("%s: no response in the inventory: PSD in dB rel. 1 count²/Hz, no NLNM/NHNM comparison",
                        seed_id)
            self.ppsd = PPSD(first.stats, metadata=dict(FLAT), special_handling="ringlaser",
                             ppsd_length=settings.ppsd_length, db_bins=COUNTS_DB_BINS)
        else:
            self.ppsd = PPSD(first.stats, metadata=inventory, ppsd_length=settings.ppsd_length)
        self.with_models = response is not None
        self.settings = settings
        self.q.clip_counts = clip_level(first, settings.clip_counts)
        self.next_segment: obspy.UTCDateTime | None = None  # where the next PSD segment starts

    def add(self, traces: obspy.Stream, lo: float, hi: float) -> None:
        """Measure ``traces`` (the channel's data from ``lo`` to ``hi`` plus one PSD segment): clipping and
        flat/empty hours over ``[lo, hi)``, PSD segments from where the last piece's stopped."""
        own = traces.slice(obspy.UTCDateTime(lo), obspy.UTCDateTime(hi) - 1e-6)
        data = [np.abs(tr.data.astype(np.float64)) for tr in own if tr.stats.npts]
        if data:
            peak = float(max(d.max() for d in data))
            self.q.max_abs_counts = peak if self.q.max_abs_counts is None else max(self.q.max_abs_counts, peak)
            if self.q.clip_counts is not None:
                self.q.clipped_samples += int(sum(int((d >= self.q.clip_counts).sum()) for d in data))
        flat, empty = _flat_and_empty(own, lo, hi, self.settings.flat_std_counts)
        self.q.flat_hours += flat
        self.q.empty_hours += empty
        feed = traces.slice(self.next_segment) if self.next_segment is not None else traces
        if feed:
            with warnings.catch_warnings():  # a piece's tail shorter than a segment is expected
                warnings.simplefilter("ignore", UserWarning)
                self.ppsd.add(feed)
        if self.ppsd.times_processed:
            self.next_segment = self.ppsd.times_processed[-1] + self.ppsd.step

    def result(self, out_dir: Path | None) -> ChannelQuality:
        """The numbers, with the PPSD PNG written to ``out_dir`` (when given and there are segments)."""
        q = self.q
        q.segments = len(self.ppsd.times_processed)
        q.bands = band_levels(self.ppsd, self.settings.bands, self.with_models)
        if q.segments and out_dir is not None:
            png = out_dir / f"{q.channel}.ppsd.png"
            self.ppsd.plot(str(png), show_noise_models=self.with_models, show=False)
            q.png = str(png)
        return q


def _files_of(src, key: StationKey, channel: str, start: float, end: float) -> list[Path]:
    """The SDS day files of one channel (other sources: none, so no header flags are read)."""
    files = getattr(src, "files", None)
    return [p for p in files(key, start, end) if f".{channel}.D." in p.name] if files else []


def pieces(start: float, end: float, piece_s: float = PIECE_S) -> list[tuple[float, float]]:
    """``[start, end)`` cut at clock hours into pieces of at most ``piece_s`` (whole hours), so that
    every clock hour lies in one piece."""
    step = max(HOUR_S, math.floor(piece_s / HOUR_S) * HOUR_S)
    cuts = [start] + [t for t in np.arange(math.floor(start / step + 1) * step, end, step).tolist()] + [end]
    return list(zip(cuts[:-1], cuts[1:]))


def _station(src, key: StationKey, start: float, end: float, inventory: obspy.Inventory | None,
             settings: QCSettings, out_dir: Path | None, piece_s: float) -> list[ChannelQuality]:
    """The channels of one station's channel group (``key.channel_prefix``), read a piece at a time:
    memory holds one piece (plus one PSD segment) of one station, not the span of every station."""
    meters: dict[str, _ChannelMeter] = {}
    for lo, hi in pieces(start, end, piece_s):
        stream = src.get_waveforms([key], lo, min(hi + settings.ppsd_length, end) - 1e-6)
        stream = stream.select(network=key.network, station=key.station, location=key.location,
                               channel=channel_pattern(key))
        for seed_id in sorted({tr.id for tr in stream}):
            traces = stream.select(id=seed_id)
            if seed_id not in meters:
                meters[seed_id] = _ChannelMeter(traces[0], inventory, settings)
            meters[seed_id].add(traces, lo, hi)
        del stream
    out = []
    for seed_id, meter in sorted(meters.items()):
        q = meter.result(out_dir)
        _timing(_files_of(src, key, seed_id.split(".")[-1], start, end), start, end, q)
        out.append(q)
    return out


def station_quality(groups: Mapping[str, Sequence[StationKey]], start: float, end: float,
                    out_dir: str | Path | None, *, inventory: obspy.Inventory | None = None,
                    settings: QCSettings | None = None, piece_s: float = PIECE_S) -> dict[str, list[ChannelQuality]]:
    """``NET.STA.LOC -> [ChannelQuality]`` for every channel with data in ``[start, end)`` of the stations
    of each source URI in ``groups`` (a station configured with two channel groups, e.g. HH and HN, gets
    the channels of both, each measured once); PPSD PNGs and ``quality.json`` are written to ``out_dir``
    (when given). Data are read per station and channel group, ``piece_s`` (whole clock hours) at a time."""
    settings = settings or QCSettings()
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[ChannelQuality]] = {}
    for uri, stations in groups.items():
        with open_source(uri) as src:
            src.report_missing = False
            for key in stations:
                found = _station(src, key, start, end, inventory, settings, out_dir, piece_s)
                if found:
                    result.setdefault(key.id, []).extend(found)
    for qs in result.values():
        qs.sort(key=lambda q: q.channel)
    if out_dir is not None:
        (out_dir / "quality.json").write_text(json.dumps(
            {sid: [asdict(q) for q in qs] for sid, qs in sorted(result.items())}, indent=1, sort_keys=True) + "\n")
    return result


def summary_line(q: ChannelQuality) -> str:
    """One printed line per channel."""
    unit = "dB" if q.unit == "acceleration" else "dB counts"
    bands = ", ".join(f"{b.period_s[0]:g}-{b.period_s[1]:g} s {b.psd_db if b.psd_db is not None else '-'}"
                      + (f" (NLNM+{b.above_nlnm_db:g})" if b.above_nlnm_db is not None else "") for b in q.bands)
    tq = "-" if q.timing_quality_median is None else f"{q.timing_quality_median:g}"
    return (f"{q.channel}: {q.segments} PSD(s), {bands} {unit}; clipped {q.clipped_samples}; timing quality {tq}, "
            f"clock locked {q.clock_locked_percent if q.clock_locked_percent is not None else '-'} %; "
            f"flat hours {len(q.flat_hours)}, empty hours {len(q.empty_hours)}")
