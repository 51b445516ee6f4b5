"""Bounded runs over archives: the streaming pipeline driven as fast as the machine allows.

``replay`` reads the span in chunks (bounded memory), feeds each station's ``StationBuffer``,
hands the segments to the same ``Engine`` the daemon uses, and writes picks and detections to
the catalog. It reads ``CONTEXT_S`` beyond each end of the span when the archive has data
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

from eqt_monitor.catalog.store import Catalog, Run
from eqt_monitor.config import MonitorConfig
from eqt_monitor.errors import UserError
from eqt_monitor.pipeline.buffer import StationBuffer
from eqt_monitor.pipeline.engine import Engine, EngineConfig, EngineOutput
from eqt_monitor.pipeline.picker import PickerConfig
from eqt_monitor.records import SAMPLING_RATE, WINDOW_SAMPLES, Detection, Pick, ProbabilitySegment, Segment, StationKey
from eqt_monitor.sources import Source, open_source, select

log = logging.getLogger(__name__)

CONTEXT_S = 2 * WINDOW_SAMPLES / SAMPLING_RATE  # read this far beyond each end of the span
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


def engine_config(config: MonitorConfig) -> EngineConfig:
    """The engine settings a ``MonitorConfig`` asks for."""
    m = config.model
    picker = PickerConfig(detection_threshold=m.detection_threshold, p_threshold=m.p_threshold, s_threshold=m.s_threshold)
    return EngineConfig(step=m.step, batch_size=m.batch_size, picker=picker)


def sources_by_station(config: MonitorConfig, override: str | None) -> dict[str, list[StationKey]]:
    """Group the configured stations by the source URI they are read from."""
    groups: dict[str, list[StationKey]] = defaultdict(list)
    for station in config.stations:
        uri = override or station.source or (config.sources[0] if config.sources else None)
        if uri is None:
            raise UserError(f"station {station.key}: no source (give --source URI or 'source:' in the config)")
        groups[uri].append(station.key)
    return dict(groups)


def fetcher(config: MonitorConfig, override: str | None) -> Callable[[Sequence[StationKey], float, float], obspy.Stream]:
    """A function reading raw waveforms of some stations over a span from wherever each is configured."""
    source_of = {key: uri for uri, keys in sources_by_station(config, override).items() for key in keys}

    def fetch(stations: Sequence[StationKey], start: float, end: float) -> obspy.Stream:
        stream = obspy.Stream()
        for uri in sorted({source_of[key] for key in stations if key in source_of}):
            with open_source(uri) as src:
                stream += src.get_waveforms([k for k in stations if source_of.get(k) == uri], start, end)
        return stream

    return fetch


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
) -> tuple[ReplaySummary, list[Pick], list[Detection]]:
    """Run the pipeline over ``[start, end)`` and return the summary, picks and detections.

    Picks and detections are also written to ``catalog`` when given (idempotently: a re-run of
    the same span adds nothing); ``probabilities`` names a folder for the D/P/S traces as
    miniSEED (channels ``<band>XD``, ``<band>XP``, ``<band>XS``). A station without data in the
    whole span read is warned about once, naming that span; no data for any station is a ``UserError``.
    """
    if not end > start:
        raise UserError(f"replay: --end ({obspy.UTCDateTime(end)}) must be after --start ({obspy.UTCDateTime(start)})")
    t_wall = time.perf_counter()
    groups = sources_by_station(config, source)
    sources: dict[str, Source] = {uri: open_source(uri) for uri in groups}
    for src in sources.values():
        src.report_missing = False  # per chunk it would name the first chunk only; see _report_missing below
    has_data: set[StationKey] = set()
    buffers = {s.key: StationBuffer(s.key, policy=config.buffer) for s in config.stations}
    engine = Engine(predict_fn, engine_config(config))
    writer = _ProbabilityWriter(probabilities) if probabilities else None
    summary = ReplaySummary(stations=len(buffers))
    picks: list[Pick] = []
    detections: list[Detection] = []

    def consume(out: EngineOutput) -> None:
        summary.windows += out.windows
        for seg in out.probabilities:
            first, last = summary.coverage.get(seg.station, (seg.start, seg.end))
            summary.coverage[seg.station] = (min(first, seg.start), max(last, seg.end))
            if writer:
                writer.add(seg)
        new_picks, new_dets = _in_span(out.picks, start, end), _in_span(out.detections, start, end)
        picks.extend(new_picks)
        detections.extend(new_dets)
        if catalog is not None:
            summary.new_picks += catalog.add_picks(new_picks, model=model_name, weights_sha256=weights_sha256)
            catalog.add_detections(new_dets, model=model_name, weights_sha256=weights_sha256)

    def feed(segments: list[Segment]) -> None:
        for seg in segments:
            overlap = min(seg.end, end) - max(seg.start, start)
            summary.station_seconds += max(0.0, overlap)
            engine.feed(seg)

    read_from, read_to = start - CONTEXT_S, end + CONTEXT_S
    n_chunks = max(1, math.ceil((read_to - read_from) / chunk_s))
    bar = _progress(n_chunks, enabled=progress)
    try:
        for i in range(n_chunks):
            t0 = read_from + i * chunk_s
            t1 = min(read_to, t0 + chunk_s)
            for uri, keys in groups.items():
                # half-open chunks [t0, t1): each sample is read exactly once (sources trim inclusively)
                stream = sources[uri].get_waveforms(keys, t0, t1 - HALF_OPEN_S)
                for key in keys:
                    for trace in select(stream, [key]):
                        has_data.add(key)
                        buffers[key].add(trace)
            for buffer in buffers.values():
                feed(buffer.pop_ready())
            consume(engine.process())
            bar.update(1)
        for buffer in buffers.values():
            feed(buffer.close())
        consume(engine.process(flush=True))
    finally:
        bar.close()
        for src in sources.values():
            src.close()
    _report_missing(groups, has_data, start, end)
    if writer:
        writer.write()
    summary.picks, summary.detections = len(picks), len(detections)
    summary.wall_s = time.perf_counter() - t_wall
    if catalog is not None:
        catalog.set_stations(config.coordinates())
        catalog.add_run(Run(started=time.time(), source=",".join(groups), model=model_name, weights_sha256=weights_sha256,
                            settings={"start": start, "end": end, "step": config.model.step}))
    return summary, picks, detections


def _report_missing(groups: dict[str, list[StationKey]], has_data: set[StationKey], start: float, end: float) -> None:
    """One warning per station without any data in ``[start, end)``; ``UserError`` when none had any."""
    span = f"between {obspy.UTCDateTime(start)} and {obspy.UTCDateTime(end)}"
    if not has_data:
        n = sum(map(len, groups.values()))
        raise UserError(f"no data for any of the {n} station(s) {span} in {', '.join(groups)}")
    for uri, keys in groups.items():
        for key in keys:
            if key not in has_data:
                log.warning("%s: no data for %s %s", uri, key, span)


def _progress(total: int, *, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="replay", unit="chunk", disable=not enabled, leave=False)
