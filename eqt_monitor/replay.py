"""Bounded runs over archives: the streaming pipeline driven as fast as the machine allows.

``replay`` reads the span in chunks (bounded memory) into the same ``driver.StationPipeline``
the daemon and ``plot`` use, and writes picks, detections and the run record to the catalog. It reads ``CONTEXT_S`` beyond each end of the span when the archive has data
there, so windows follow the absolute-time grid exactly as in a replay of a longer span: a
span replayed in pieces gives the same picks as the whole, and each pick lands in exactly one
piece (picks are kept when ``start <= time < end``).
"""
from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import obspy

from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import MonitorConfig
from eqt_monitor.driver import CatalogWriter, StationPipeline, sources_by_station
from eqt_monitor.errors import UserError
from eqt_monitor.pipeline.engine import CONTEXT_S, EngineOutput
from eqt_monitor.records import Detection, Pick, ProbabilitySegment, Segment, StationKey
from eqt_monitor.sources import open_source
from eqt_monitor.sources.base import Source

log = logging.getLogger(__name__)

HALF_OPEN_S = 1e-6  # below any sample spacing, above float64 resolution of POSIX times
PROBABILITY_CHANNELS = {"detection": "XD", "p": "XP", "s": "XS"}  # band letter + these, e.g. HXD


@dataclass
class ReplaySummary:
    """What a replay did, for the one-line summary."""

    stations: int = 0
    station_seconds: float = 0.0  # data within the span, summed over stations
    windows: int = 0
    picks: int = 0
    new_picks: int = 0
    detections: int = 0
    events: int = 0  # new located events (when association ran)
    wall_s: float = 0.0
    coverage: dict[StationKey, tuple[float, float]] = field(default_factory=dict)  # first, last probability sample

    @property
    def station_hours(self) -> float:
        return self.station_seconds / 3600.0

    def line(self) -> str:
        """One summary line: stations, station-hours, windows, picks, wall seconds, windows/s."""
        rate = self.windows / self.wall_s if self.wall_s > 0 else 0.0
        return (f"replay: {self.stations} stations, {self.station_hours:.2f} station-hours, {self.windows} windows, "
                f"{self.picks} picks ({self.new_picks} new), {self.detections} detections, {self.events} new events, "
                f"{self.wall_s:.1f} s wall, {rate:.0f} windows/s")


class _ProbabilityWriter:
    """Collects probability segments per station and writes them as miniSEED (``--probabilities``)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.traces: dict[StationKey, list[obspy.Trace]] = defaultdict(list)

    def add(self, segment: ProbabilitySegment) -> None:
        key = segment.station
        for name, suffix in PROBABILITY_CHANNELS.items():
            header = {"network": key.network, "station": key.station, "location": key.location,
                      "channel": (key.channel_prefix[:1] or "H") + suffix, "sampling_rate": segment.sampling_rate,
                      "starttime": obspy.UTCDateTime(segment.start)}
            self.traces[key].append(obspy.Trace(np.asarray(getattr(segment, name), dtype=np.float32), header=header))

    def write(self) -> list[Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        written = []
        for key, traces in sorted(self.traces.items()):
            stream = obspy.Stream(traces)
            stream.merge(method=1)
            path = self.folder / f"{key.id}.{key.channel_prefix[:1] or 'H'}X.mseed"
            stream.split().write(str(path), format="MSEED", encoding="FLOAT32")
            written.append(path)
        return written


def _in_span(items: Sequence[Pick | Detection], start: float, end: float) -> list:
    return [x for x in items if start <= getattr(x, "time", getattr(x, "start", 0.0)) < end]


def replay(
    config: MonitorConfig,
    *,
    start: float,
    end: float,
    predict_fn: Callable[[np.ndarray], np.ndarray],
    model_name: str,
    weights_sha256: str,
    source: str | None = None,
    catalog: Catalog | None = None,
    chunk_s: float = 3600.0,
    probabilities: Path | None = None,
    progress: bool = True,
    require_data: bool = True,
) -> tuple[ReplaySummary, list[Pick], list[Detection]]:
    """Run the pipeline over ``[start, end)`` and return the summary, picks and detections.

    Picks and detections are also written to ``catalog`` when given (idempotently: a re-run of
    the same span adds nothing), with the run record; ``probabilities`` names a folder for the
    D/P/S traces as miniSEED (channels ``<band>XD``, ``<band>XP``, ``<band>XS``). A station
    without data in the whole span read is warned about once, naming that span; no data for any
    station is a ``UserError``.
    """
    if not end > start:
        raise UserError(f"replay: --end ({obspy.UTCDateTime(end)}) must be after --start ({obspy.UTCDateTime(start)})")
    t_wall = time.perf_counter()
    groups = sources_by_station(config, source)
    sources: dict[str, Source] = {}
    has_data: set[StationKey] = set()
    summary = ReplaySummary(stations=len(config.stations))

    def count(segment: Segment) -> None:
        summary.station_seconds += max(0.0, min(segment.end, end) - max(segment.start, start))

    pipeline = StationPipeline(config, predict_fn, on_segment=count)
    writer = CatalogWriter(catalog, model=model_name, weights_sha256=weights_sha256) if catalog is not None else None
    probability_files = _ProbabilityWriter(probabilities) if probabilities else None
    picks: list[Pick] = []
    detections: list[Detection] = []

    def consume(out: EngineOutput) -> None:
        summary.windows += out.windows
        for seg in out.probabilities:
            first, last = summary.coverage.get(seg.station, (seg.start, seg.end))
            summary.coverage[seg.station] = (min(first, seg.start), max(last, seg.end))
            if probability_files:
                probability_files.add(seg)
        new_picks, new_dets = _in_span(out.picks, start, end), _in_span(out.detections, start, end)
        if writer is not None:
            new_picks = writer.stamp(new_picks)
            summary.new_picks += writer.write(new_picks, new_dets)
        picks.extend(new_picks)
        detections.extend(new_dets)

    read_from, read_to = start - CONTEXT_S, end + CONTEXT_S
    n_chunks = max(1, math.ceil((read_to - read_from) / chunk_s))
    bar = _progress(n_chunks, enabled=progress)
    try:
        for uri in groups:
            sources[uri] = open_source(uri)
            sources[uri].report_missing = False  # per chunk it would name the first chunk only; see _report_missing
        for i in range(n_chunks):
            t0 = read_from + i * chunk_s
            t1 = min(read_to, t0 + chunk_s)
            for uri, keys in groups.items():
                # half-open chunks [t0, t1): each sample is read exactly once (sources trim inclusively)
                for trace in sources[uri].get_waveforms(keys, t0, t1 - HALF_OPEN_S):
                    key = pipeline.add(trace)
                    if key is not None:
                        has_data.add(key)
            consume(pipeline.process())
            bar.update(1)
        consume(pipeline.close())
    finally:
        bar.close()
        for src in sources.values():
            src.close()
    if has_data or require_data:
        _report_missing(groups, has_data, start, end)
    if probability_files:
        probability_files.write()
    summary.picks, summary.detections = len(picks), len(detections)
    summary.wall_s = time.perf_counter() - t_wall
    if writer is not None:
        writer.record_run(config, groups, {"start": start, "end": end})
    return summary, picks, detections


def replay_into_catalog(config: MonitorConfig, catalog: Catalog, *, start: float, end: float,
                        predict_fn: Callable[[np.ndarray], np.ndarray], model_name: str, weights_sha256: str,
                        source: str | None = None, locate: bool = True, picks_csv: Path | None = None,
                        quakeml: Path | None = None, **options) -> ReplaySummary:
    """``eqt-monitor replay``: :func:`replay` into ``catalog``, then (``locate``) associate, locate and
    measure ML over the span, and write the span's picks as EqT CSV and its events as QuakeML if asked.
    ``options`` go to :func:`replay` (``chunk_s``, ``probabilities``, ``progress``)."""
    from eqt_monitor.driver import fetcher
    from eqt_monitor.locate import locate_span

    t_wall = time.perf_counter()
    summary, _, _ = replay(config, start=start, end=end, predict_fn=predict_fn, model_name=model_name,
                           weights_sha256=weights_sha256, source=source, catalog=catalog, **options)
    if locate:
        summary.events = len(locate_span(catalog, config, start, end, fetcher(config, source)))
    export_span(catalog, config, start, end, picks_csv=picks_csv, quakeml=quakeml)
    summary.wall_s = time.perf_counter() - t_wall
    return summary


def export_span(catalog: Catalog, config: MonitorConfig, start: float, end: float, *,
                picks_csv: Path | None = None, quakeml: Path | None = None) -> None:
    """The span's picks as EqT CSV (``picks_csv``) and its events as QuakeML (``quakeml``), where asked."""
    from eqt_monitor.catalog.export import export_quakeml, write_eqt_csv

    if picks_csv:
        write_eqt_csv(catalog, picks_csv, start=start, end=end)
    if quakeml:
        export_quakeml(catalog, quakeml, start=start, end=end, agency=config.agency)


def _between(start: float, end: float) -> str:
    return f"between {obspy.UTCDateTime(start)} and {obspy.UTCDateTime(end)}"


def no_data_error(groups: dict[str, list[StationKey]], start: float, end: float) -> UserError:
    """The error for a span in which none of the stations of ``groups`` (per source URI) has data."""
    n = sum(map(len, groups.values()))
    return UserError(f"no data for any of the {n} station(s) {_between(start, end)} in {', '.join(groups)}")


def _report_missing(groups: dict[str, list[StationKey]], has_data: set[StationKey], start: float, end: float) -> None:
    """One warning per station without any data in ``[start, end)``; ``UserError`` when none had any."""
    if not has_data:
        raise no_data_error(groups, start, end)
    span = _between(start, end)
    for uri, keys in groups.items():
        for key in keys:
            if key not in has_data:
                log.warning("%s: no data for %s %s", uri, key, span)


def _progress(total: int, *, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="replay", unit="chunk", disable=not enabled, leave=False)
