"""The unit of work of a cluster replay: one station group over one time chunk, run on a worker.

A task is the serial :func:`eqt_monitor.replay.replay` over ``[chunk.start, chunk.end)`` for its
stations, read from the source URI by the worker itself; replay reads ``CONTEXT_S`` beyond each
end and keeps the picks inside, so the pieces' picks are the whole span's. The model is loaded
once per worker process (``worker_model``). What comes back is picks, detections and counts —
never waveforms.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import resource
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import obspy

from eqt_monitor.catalog.ids import digest
from eqt_monitor.config import MonitorConfig
from eqt_monitor.driver import sources_by_station
from eqt_monitor.errors import UserError, one_line
from eqt_monitor.records import Detection, Pick, StationKey
from eqt_monitor.replay import replay


# default task length: a task reads CONTEXT_S (120 s) beyond each end, 6.7 % more data on 1 h tasks
# (measured: 1-h tasks cost 7 %, 15-min tasks 84 % more CPU per station-hour than the serial replay)
# and 0.3 % on a day, which is also the unit of the archives (SDS day files) and of association blocks
TASK_S = 86400.0


@dataclass(frozen=True)
class ModelRef:
    """Which model a worker loads: name, weights file (a path every worker can read) and its sha256,
    and Monte-Carlo dropout (``model.mc_dropout`` passes, ``mc_seed``; 0: the deterministic model)."""

    name: str
    weights: str | None
    sha256: str
    backend: str = "tensorflow"
    mc_dropout: int = 0
    mc_seed: int = 0


@dataclass(frozen=True)
class Chunk:
    """One task: ``stations`` (all read from ``uri``) over ``[start, end)``; ``index`` is its place in the plan."""

    index: int
    uri: str
    stations: tuple[StationKey, ...]
    start: float
    end: float

    @property
    def station_hours(self) -> float:
        return len(self.stations) * (self.end - self.start) / 3600.0

    @property
    def label(self) -> str:
        """``NET.STA.LOC[,…] START..END`` for messages."""
        names = ",".join(k.id for k in self.stations)
        return f"{names} {obspy.UTCDateTime(self.start)}..{obspy.UTCDateTime(self.end)}"

    def state_keys(self, settings: str) -> list[str]:
        """The catalog ``state`` keys that record this chunk's stations as finished under ``settings``."""
        return [station_chunk_key(settings, self.uri, key, self.start, self.end) for key in self.stations]

    def task_key(self, settings: str) -> str:
        """A name for the Dask task, unique to its stations, span and settings."""
        return f"eqt-chunk-{self.index}-{digest(*self.state_keys(settings))[:8]}"


def station_chunk_key(settings: str, uri: str, station: StationKey, start: float, end: float) -> str:
    """The ``state`` key recording ``station`` as replayed over ``[start, end)`` under pipeline
    ``settings``; per station, so a re-run with other groups still knows what is done."""
    return f"replay-chunk/{digest(settings, uri, station.id + '.' + station.channel_prefix, repr(start), repr(end))}"


@dataclass
class ChunkResult:
    """What a task sends back: the chunk's picks and detections (in span), counts, and trouble."""

    index: int
    picks: list[Pick] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    station_seconds: float = 0.0
    windows: int = 0
    coverage: dict[StationKey, tuple[float, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # bad-data warnings: the chunk is reported, not marked done
    error: str | None = None  # the task raised: no picks from it
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0  # the worker process's peak so far


def settings_digest(config: MonitorConfig, model: ModelRef) -> str:
    """What makes a finished chunk's picks valid: the weights and the pipeline settings."""
    m = config.model
    return digest(model.name, model.sha256, m.step, m.detection_threshold, m.p_threshold, m.s_threshold,
                  m.batch_size, dataclasses.asdict(config.buffer), *((model.mc_dropout, model.mc_seed)
                                                                     if model.mc_dropout else ()))


# stations per task at most when the group size is chosen for the cluster: a group's windows are
# predicted in shared batches, and its set-up (reading, buffers) is paid once
MAX_GROUP = 16


def time_spans(start: float, end: float, chunk_s: float) -> list[tuple[float, float]]:
    """``[start, end)`` cut into chunks of ``chunk_s`` (the first starts at ``start``)."""
    return [(start + i * chunk_s, min(end, start + (i + 1) * chunk_s)) for i in range(max(1, math.ceil((end - start) / chunk_s)))]


def auto_group(config: MonitorConfig, source: str | None, spans: int, workers: int) -> int:
    """Stations per task for ``workers`` over ``spans`` time chunks: as many as keeps every worker
    busy (a short span is split across stations, a long one across time), at most ``MAX_GROUP``."""
    largest = max((len(keys) for keys in sources_by_station(config, source).values()), default=1)
    tasks_per_span = math.ceil(max(1, workers) / spans)
    return max(1, min(MAX_GROUP, math.ceil(largest / tasks_per_span)))


def plan_chunks(config: MonitorConfig, source: str | None, start: float, end: float, chunk_s: float,
                group_size: int = 1, settings: str = "", finished: Collection[str] = ()) -> list[Chunk]:
    """Tasks over ``[start, end)``: time chunks of ``chunk_s`` × groups of up to ``group_size``
    stations sharing a source, ordered by time, then group; a station whose chunk key
    (``station_chunk_key`` under ``settings``) is in ``finished`` is left out before grouping."""
    by_source = [(uri, sorted(keys, key=str)) for uri, keys in sorted(sources_by_station(config, source).items())]
    chunks: list[Chunk] = []
    for t0, t1 in time_spans(start, end, chunk_s):
        for uri, keys in by_source:
            left = [k for k in keys if station_chunk_key(settings, uri, k, t0, t1) not in finished]
            for i in range(0, len(left), group_size):
                chunks.append(Chunk(len(chunks), uri, tuple(left[i:i + group_size]), t0, t1))
    return chunks


def subconfig(config: MonitorConfig, chunk: Chunk) -> MonitorConfig:
    """``config`` with only the chunk's stations (what a task is shipped)."""
    wanted = set(chunk.stations)
    return dataclasses.replace(config, stations=[s for s in config.stations if s.key in wanted])


_MODELS: dict[tuple, tuple[object, object]] = {}


def worker_threads() -> int:
    """Threads of the Dask worker this runs in (1 outside a worker)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def worker_model(ref: ModelRef):
    """``(LoadedModel, predict function)``, loaded once per process (keyed by the whole ``ref``), its
    intra-op thread pool sized to the worker's threads. With ``mc_dropout`` the predict function is
    ``model.load.monte_carlo``'s, whose output per window depends only on the seed and the window:
    chunks on any worker give the serial replay's picks and uncertainties."""
    key = dataclasses.astuple(ref)
    if key not in _MODELS:
        from eqt_monitor.model.backend import configure

        configure(ref.backend, threads=worker_threads())
        from eqt_monitor.model.load import load_predictor

        loaded, predict = load_predictor(ref.name, ref.weights, mc_dropout=ref.mc_dropout, seed=ref.mc_seed)
        if (loaded.weights_sha256 or "random") != ref.sha256:
            raise UserError(f"weights {ref.weights}: sha256 on this worker is {loaded.weights_sha256}, the client's {ref.sha256}")
        _MODELS[key] = loaded, predict
    return _MODELS[key]


class _BadData(logging.Handler):
    """Collects the warnings marked ``errors.BAD_DATA`` that the task's own thread logs while it runs.

    Only those: a gap, a station without data, a missing horizontal that is zero-filled or 1/2 used
    as N/E are what the serial replay does too, so their chunks finish as done; and a worker's
    other threads (Dask's, or a second task's on a multi-threaded worker) are not this chunk's."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "bad_data", False) and record.thread == self.thread:
            self.messages.append(one_line(record.getMessage(), 300))


def run_chunk(chunk: Chunk, config: MonitorConfig, model: ModelRef, read_s: float = 3600.0) -> ChunkResult:
    """Replay one chunk on this worker (``read_s``: seconds read at a time); never raises: a failure
    is the result's ``error``, bad-data warnings its ``problems``."""
    t0 = time.perf_counter()
    result = ChunkResult(chunk.index)
    watcher = _BadData()
    root = logging.getLogger("eqt_monitor")
    root.addHandler(watcher)
    try:
        _, predict = worker_model(model)
        summary, picks, detections = replay(
            config, start=chunk.start, end=chunk.end, predict_fn=predict, model_name=model.name,
            weights_sha256=model.sha256, source=chunk.uri, chunk_s=read_s, progress=False, require_data=False)
        result.picks, result.detections = picks, detections
        result.station_seconds, result.windows, result.coverage = summary.station_seconds, summary.windows, summary.coverage
    except Exception as exc:  # reported with the chunk; the other chunks go on
        result.error = one_line(f"{type(exc).__name__}: {exc}", 300)
    finally:
        root.removeHandler(watcher)
    result.problems = watcher.messages[:5]
    result.wall_s = time.perf_counter() - t0
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result
