"""The one driver of the pipeline: configured stations' raw traces → station buffers (the
configured gap policy) → the engine (windows, batched model, stacking, picker) → picks,
detections and probability segments, and their writes to the catalog with the run record.

``replay`` (bounded spans read in chunks), the live daemon (traces as they arrive) and ``plot``
(the traces around one event) all run their data through a :class:`StationPipeline` and write
through a :class:`CatalogWriter`; they differ only in where the traces come from and when they
ask for output.
"""
from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np
import obspy

from eqt_monitor.catalog.ids import pick_id
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import ModelConfig, MonitorConfig, StationConfig
from eqt_monitor.errors import UserError
from eqt_monitor.pipeline.buffer import GapPolicy, StationBuffer
from eqt_monitor.pipeline.engine import Engine, EngineConfig, EngineOutput
from eqt_monitor.pipeline.picker import PickerConfig
from eqt_monitor.records import Detection, EarlyOutcome, Pick, Run, Segment, StationKey
from eqt_monitor.sources import open_source
from eqt_monitor.sources.base import StationLookup

Fetch = Callable[[Sequence[StationKey], float, float], obspy.Stream]


def engine_config(config: MonitorConfig, *, early_picks: bool = False) -> EngineConfig:
    """The engine settings a ``MonitorConfig`` asks for (``early_picks``: also preliminary picks)."""
    m = config.model
    picker = PickerConfig(detection_threshold=m.detection_threshold, p_threshold=m.p_threshold, s_threshold=m.s_threshold)
    return EngineConfig(step=m.step, batch_size=m.batch_size, picker=picker, uncertainty=m.mc_dropout > 0,
                        early_picks=early_picks)


def sources_by_station(config: MonitorConfig, override: str | None) -> dict[str, list[StationKey]]:
    """Group the configured stations by the source URI they are read from."""
    groups: dict[str, list[StationKey]] = defaultdict(list)
    for station in config.stations:
        uri = override or station.source or (config.sources[0] if config.sources else None)
        if uri is None:
            raise UserError(f"station {station.key}: no source (give --source URI or 'source:' in the config)")
        groups[uri].append(station.key)
    return dict(groups)


def read_span(uris: Iterable[str], stations: Sequence[StationKey], start: float, end: float) -> obspy.Stream:
    """Raw waveforms of ``stations`` over ``[start, end]`` from each source in turn (one stream;
    a station without data is simply absent: the caller says what that means)."""
    stream = obspy.Stream()
    for uri in uris:
        with open_source(uri) as src:
            src.report_missing = False
            stream += src.get_waveforms(stations, start, end)
    return stream


def fetcher(config: MonitorConfig, override: str | None) -> Fetch:
    """A function reading raw waveforms of some stations over a span from wherever each is configured."""
    source_of = {key: uri for uri, keys in sources_by_station(config, override).items() for key in keys}

    def fetch(stations: Sequence[StationKey], start: float, end: float) -> obspy.Stream:
        stream = obspy.Stream()
        for uri in sorted({source_of[key] for key in stations if key in source_of}):
            stream += read_span([uri], [k for k in stations if source_of.get(k) == uri], start, end)
        return stream

    return fetch


class BufferObserver(Protocol):
    """Told what the buffers did (the daemon's station health turns it into metrics and log lines)."""

    def received(self, key: StationKey, buffer: StationBuffer) -> None:
        """``buffer`` just took a trace of ``key``."""

    def handed_on(self, key: StationKey, buffer: StationBuffer) -> None:
        """``buffer`` just handed its ready segments on."""


class StationPipeline:
    """Buffers of the configured stations in front of one ``Engine``.

    ``add`` a raw trace (any order, any record size), then ``process()`` for the output that is
    final so far; ``close()`` at the end of the data. ``on_segment`` sees every segment on its
    way to the engine (replay counts the data it covers). ``early_picks``: the engine also makes
    preliminary picks (the daemon's ``picks: early``).
    """

    def __init__(self, config: MonitorConfig, predict_fn: Callable[[np.ndarray], np.ndarray], *,
                 stations: Iterable[StationKey] | None = None,
                 on_station_error: Callable[[StationKey, Exception], None] | None = None,
                 on_segment: Callable[[Segment], None] | None = None,
                 observer: BufferObserver | None = None, early_picks: bool = False) -> None:
        self.policy = config.buffer
        self.engine = Engine(predict_fn, engine_config(config, early_picks=early_picks),
                             on_station_error=on_station_error)
        self.buffers: dict[StationKey, StationBuffer] = {}
        self.orientations = {s.key: s.orientation for s in config.stations}  # per station, for its buffer
        self._lookup = StationLookup()
        self._touched: set[StationKey] = set()
        self._on_segment, self._observer = on_segment, observer
        for key in (s.key for s in config.stations) if stations is None else stations:
            self.add_station(key)

    @property
    def keys(self) -> list[StationKey]:
        """The stations, sorted."""
        return sorted(self.buffers, key=str)

    def add_station(self, key: StationKey, orientation: dict[str, tuple[float, float]] | None = None) -> None:
        """Start buffering ``key`` (a new station with its channels' ``orientation``, or one reset
        after a failure, which keeps the orientation it had)."""
        if orientation is not None:
            self.orientations[key] = orientation
        self.buffers[key] = StationBuffer(key, policy=self.policy, orientation=self.orientations.get(key))
        self._lookup.add(key)

    def remove_station(self, key: StationKey) -> None:
        """Drop a station, its buffer and what the engine held of it."""
        self.buffers.pop(key, None)
        self.orientations.pop(key, None)
        self._lookup.remove(key)
        self._touched.discard(key)
        self.engine.remove(key)

    def station_of(self, trace: obspy.Trace) -> StationKey | None:
        """The configured station a trace belongs to (None: not configured)."""
        return self._lookup.find_trace(trace)

    def add(self, trace: obspy.Trace) -> StationKey | None:
        """Buffer one raw trace; returns its station (None: not a configured station, dropped)."""
        key = self.station_of(trace)
        if key is None:
            return None
        buffer = self.buffers[key]
        buffer.add(trace)
        self._touched.add(key)
        if self._observer is not None:
            self._observer.received(key, buffer)
        return key

    def _feed(self, segments: list[Segment]) -> None:
        for segment in segments:
            if segment.station in self.buffers:  # a station may have failed while its data was on the way
                if self._on_segment is not None:
                    self._on_segment(segment)
                self.engine.feed(segment)

    def process(self, *, flush: bool = False, max_batches: int | None = None) -> EngineOutput:
        """Hand the buffers' ready data to the engine and return what is final (``flush``: also
        the last partial batch; ``max_batches``: at most this many model calls)."""
        for key in sorted(self._touched, key=str):
            buffer = self.buffers[key]
            segments = buffer.pop_ready()
            if self._observer is not None:
                self._observer.handed_on(key, buffer)
            self._feed(segments)
        self._touched.clear()
        return self.engine.process(flush=flush, max_batches=max_batches)

    def close(self) -> EngineOutput:
        """The data has ended: hand on everything buffered and return the rest of the output."""
        for key in self.keys:
            self._feed(self.buffers[key].close())
        self._touched.clear()
        return self.engine.process(flush=True)

    def settled(self) -> dict[StationKey, float | None]:
        """Per station, the time before which its picks and detections are all out."""
        return {key: self.engine.station(key).settled_until for key in self.engine.stations}


class CatalogWriter:
    """Writes a run's picks and detections (idempotently) and its run record to the catalog."""

    def __init__(self, catalog: Catalog, *, model: str, weights_sha256: str) -> None:
        self.catalog, self.model, self.weights_sha256 = catalog, model, weights_sha256

    def stamp(self, picks: Iterable[Pick]) -> list[Pick]:
        """The picks with the resource ids they have in the catalog (arrivals refer to them by it)."""
        return [dataclasses.replace(p, id=pick_id(p, self.weights_sha256)) for p in picks]

    def write(self, picks: Sequence[Pick], detections: Sequence[Detection], early: Sequence[Pick] = (),
              outcomes: Sequence[EarlyOutcome] = ()) -> int:
        """Store picks and detections (and preliminary picks made and resolved, ``picks: early``);
        returns how many picks were new. Final picks go first: a resolution names the final pick."""
        new = self.catalog.add_picks(picks, model=self.model, weights_sha256=self.weights_sha256) if picks else 0
        if detections:
            self.catalog.add_detections(detections, model=self.model, weights_sha256=self.weights_sha256)
        if early:
            self.catalog.add_early_picks(early, model=self.model, weights_sha256=self.weights_sha256)
        if outcomes:
            self.catalog.resolve_early_picks(outcomes, weights_sha256=self.weights_sha256)
        return new

    def record_run(self, config: MonitorConfig, sources: Iterable[str], settings: dict) -> None:
        """The run record and the stations' coordinates: ``plot`` re-reads the run's sources and
        re-runs its model with its window step, thresholds, gap policy and the stations' channel
        orientations (:func:`config_of_run`)."""
        m = config.model
        orientation = {str(s.key): {c: list(o) for c, o in sorted(s.orientation.items())}
                       for s in config.stations if s.orientation}
        pipeline = {"step": m.step, "detection_threshold": m.detection_threshold, "p_threshold": m.p_threshold,
                    "s_threshold": m.s_threshold, "buffer": dataclasses.asdict(config.buffer),
                    **({"orientation": orientation} if orientation else {}),
                    **({"mc_dropout": m.mc_dropout, "mc_seed": m.mc_seed} if m.mc_dropout else {})}
        self.catalog.set_stations(config.coordinates())
        self.catalog.add_run(Run(started=time.time(), source=",".join(sources), model=self.model,
                                 weights_sha256=self.weights_sha256, settings={**settings, **pipeline}))


def config_of_run(run: Run | None, stations: Iterable[StationKey]) -> MonitorConfig:
    """The pipeline settings a recorded run used, for ``stations`` (defaults where the record
    predates them, or without a record), with each station's recorded channel orientation."""
    settings = run.settings if run is not None else {}
    orientation = {key: {c: (float(o[0]), float(o[1])) for c, o in channels.items()}
                   for key, channels in settings.get("orientation", {}).items()}
    model = ModelConfig(**{k: settings[k] for k in ("step", "detection_threshold", "p_threshold", "s_threshold")
                           if k in settings})
    known = {f.name for f in dataclasses.fields(GapPolicy)}  # a record from another version may differ
    buffer = GapPolicy(**{k: v for k, v in settings.get("buffer", {}).items() if k in known})
    return MonitorConfig(path=None, stations=[StationConfig(key, orientation=orientation.get(str(key))) for key in stations],
                         model=model, buffer=buffer)
