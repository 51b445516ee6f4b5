"""The client of a cluster replay: connect, plan, skip finished chunks, gather, write, associate.

Results come back as they complete and are written through the one ``CatalogWriter`` in plan
order (a chunk waits for the chunks before it), so a run, or a run killed and re-run, leaves the
same rows in the same order (a group's rows station by station, as one-station tasks' would be).
Each written chunk marks its stations' (station, time chunk) pieces in the catalog's ``state``
table in one transaction; a re-run skips the pieces marked, whatever grouping wrote them. The
client holds picks only (never waveforms).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from eqt_monitor.catalog.store import Catalog
from eqt_monitor.cluster.blocks import BLOCK_S, SpanAssociation
from eqt_monitor.cluster.tasks import (TASK_S, Chunk, ChunkResult, ModelRef, auto_group, plan_chunks, run_chunk,
                                       settings_digest, subconfig, time_spans)
from eqt_monitor.config import MonitorConfig, cluster_spec_problem
from eqt_monitor.driver import CatalogWriter, sources_by_station
from eqt_monitor.errors import UserError
from eqt_monitor.replay import ReplaySummary

log = logging.getLogger(__name__)

# tasks submitted ahead of the results written: keeps the scheduler's graph and the client's
# out-of-order results bounded however long the span is
IN_FLIGHT_PER_WORKER = 4
MIN_IN_FLIGHT = 64


@dataclass
class ClusterSummary(ReplaySummary):
    """A replay's summary plus the cluster's: tasks run, (station, time chunk) pieces skipped
    (finished before) and failed chunks."""

    chunks: int = 0  # tasks run
    skipped: int = 0  # station-chunks finished before
    failed: list[tuple[str, str]] = field(default_factory=list)  # (chunk label, reason)
    peak_rss_mb: float = 0.0  # the largest worker peak seen
    task_s: float = 0.0  # summed task wall time on the workers
    write_s: float = 0.0  # the client's time writing results to the catalog

    def failures(self, command: str = "the same command") -> str:
        """The failed chunks, one per line, and how to retry them."""
        lines = [f"replay: {len(self.failed)} of {self.chunks} chunk(s) failed:"]
        lines += [f"  {label}: {reason}" for label, reason in self.failed]
        lines.append(f"fix or remove their data and run {command} again: finished chunks are skipped")
        return "\n".join(lines)


@contextlib.contextmanager
def connect(spec: str) -> Iterator:
    """A ``distributed.Client`` for ``local``, ``local:N`` (one single-threaded worker process per
    core, or N) or ``tcp://HOST:PORT`` (a running scheduler); the local cluster is closed after."""
    problem = cluster_spec_problem(spec)
    if problem:
        raise UserError(f"--cluster {spec!r}: {problem}")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--cluster needs Dask: pip install 'dask[distributed]'") from None
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines would bury the summary
    if spec.startswith("tcp://"):
        try:
            client = Client(spec, timeout="20s")
        except OSError as exc:
            raise UserError(f"--cluster {spec}: no Dask scheduler answers there ({exc})") from None
        with client:
            yield client
        return
    n = int(spec.partition(":")[2] or os.cpu_count() or 1)
    # the scheduler's HTTP server (the dashboard when bokeh is installed) on a free port: 8787 may be taken
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, silence_logs=logging.WARNING,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


def dashboard_line(client) -> str:
    """Where the scheduler's dashboard is, or why there is none."""
    try:
        serves = client.run_on_scheduler(_serves_dashboard)
    except Exception:  # a scheduler that runs no client code (distributed.scheduler.pickle: false)
        return f"Dask dashboard: {client.dashboard_link} (if the scheduler has bokeh)"
    if serves:
        return f"Dask dashboard: {client.dashboard_link}"
    return "Dask dashboard: none (the scheduler needs bokeh for one: pip install 'eqt-monitor[cluster]')"


def _serves_dashboard(dask_scheduler=None) -> bool:
    """On the scheduler: whether its HTTP server has the bokeh dashboard (it starts one only when
    bokeh imports and the dashboard is not disabled, e.g. ``dask scheduler --no-dashboard``)."""
    return "distributed.dashboard.scheduler" in sys.modules and dask_scheduler.http_server is not None


def replay_on_cluster(config: MonitorConfig, catalog: Catalog, *, start: float, end: float, model: ModelRef,
                      cluster: str, source: str | None = None, chunk_s: float = TASK_S, group_size: int | None = None,
                      locate: bool = True, progress: bool = True, association_block_s: float = BLOCK_S) -> ClusterSummary:
    """Replay ``[start, end)`` as (station group, chunk) tasks on ``cluster`` into ``catalog``, then
    (``locate``) associate the span's picks (in blocks of ``association_block_s`` when longer, see
    ``cluster.blocks``); ``group_size`` None: ``tasks.auto_group`` for the workers the cluster has.
    Stations already finished (by any grouping) are skipped; see the module docstring."""
    t_wall = time.perf_counter()
    settings = settings_digest(config, model)
    finished = catalog.states("replay-chunk/")  # one query, not one per chunk
    summary = ClusterSummary(stations=len(config.stations))
    planned = _count_finished(summary, config, source, start, end, chunk_s, settings, finished)
    writer = CatalogWriter(catalog, model=model.name, weights_sha256=model.sha256)
    association = SpanAssociation(catalog, config, start, end, source, settings, association_block_s) if locate else None
    if summary.skipped < planned:
        with connect(cluster) as client:
            log.warning("%s", dashboard_line(client))
            workers = len(client.scheduler_info()["workers"])
            group_size = group_size or auto_group(config, source, len(time_spans(start, end, chunk_s)), workers)
            todo = plan_chunks(config, source, start, end, chunk_s, group_size, settings, finished)
            summary.chunks = len(todo)
            _run(client, todo, config, model, writer, settings, summary, association, progress, workers)
    if association is not None:
        summary.events = association.finish()
    writer.record_run(config, sorted({uri for uri in sources_by_station(config, source)}),
                      {"start": start, "end": end, "cluster": cluster, "chunk": chunk_s, "group_size": group_size})
    summary.wall_s = time.perf_counter() - t_wall
    return summary


def _count_finished(summary: ClusterSummary, config: MonitorConfig, source: str | None, start: float, end: float,
                    chunk_s: float, settings: str, finished: dict[str, str]) -> int:
    """Count the span's (station, time chunk) pieces finished before into ``summary.skipped`` and
    their tasks' counts into its totals (each task once: its stations' marks carry the same
    counts); returns how many pieces the span has."""
    tasks: dict[str, dict] = {}
    pieces = plan_chunks(config, source, start, end, chunk_s, 1)
    for chunk in pieces:
        for key in chunk.state_keys(settings):
            if key in finished:
                summary.skipped += 1
                counts = json.loads(finished[key])
                tasks[counts.get("task", key)] = counts
    for counts in tasks.values():
        summary.station_seconds += counts["station_seconds"]
        summary.windows += counts["windows"]
        summary.picks += counts["picks"]
        summary.detections += counts["detections"]
    return len(pieces)


def _run(client, todo: list[Chunk], config: MonitorConfig, model: ModelRef, writer: CatalogWriter, settings: str,
         summary: ClusterSummary, association: SpanAssociation | None, progress: bool, workers: int) -> None:
    """Submit ``todo``, write results in plan order as they complete; tell ``association`` each time
    all chunks up to a time are written."""
    from distributed import KilledWorker, as_completed
    from tqdm import tqdm

    by_index = {c.index: c for c in todo}
    pending: dict[int, ChunkResult] = {}
    order = iter(todo)
    upcoming = next(order, None)
    chunks = iter(todo)
    futures: dict = {}

    def submit() -> None:
        chunk = next(chunks, None)
        if chunk is not None:
            future = client.submit(run_chunk, chunk, subconfig(config, chunk), model, key=chunk.task_key(settings))
            futures[future] = chunk
            running.add(future)

    running = as_completed()
    for _ in range(max(MIN_IN_FLIGHT, IN_FLIGHT_PER_WORKER * workers)):
        submit()
    bar = tqdm(total=round(sum(c.station_hours for c in todo), 2), desc="replay", unit="station-h",
               disable=not progress, leave=False)
    try:
        for future in running:
            try:
                result: ChunkResult = future.result()
            except KilledWorker as exc:  # the task took down every worker it was given (memory? a crash?)
                result = ChunkResult(futures[future].index, error=f"the task killed {exc.allowed_failures + 1} "
                                     "workers, Dask gave up (out of memory? see the workers' logs)")
            except Exception as exc:
                result = ChunkResult(futures[future].index, error=f"{type(exc).__name__}: {exc}"[:300])
            future.release()
            del futures[future]
            submit()
            pending[result.index] = result
            bar.update(round(by_index[result.index].station_hours, 2))
            while upcoming is not None and upcoming.index in pending:
                written = upcoming
                t_write = time.perf_counter()
                _write(written, pending.pop(written.index), writer, settings, summary)
                summary.write_s += time.perf_counter() - t_write
                upcoming = next(order, None)
                if association is not None and (upcoming is None or upcoming.start != written.start):
                    association.complete(written.end)
    finally:
        bar.close()


def _write(chunk: Chunk, result: ChunkResult, writer: CatalogWriter, settings: str, summary: ClusterSummary) -> None:
    """One chunk's picks and detections into the catalog, then (clean data only) its ``state`` mark."""
    summary.peak_rss_mb = max(summary.peak_rss_mb, result.peak_rss_mb)
    summary.task_s += result.wall_s
    if result.error is not None:
        summary.failed.append((chunk.label, result.error))
        return
    # station by station in the chunk's order: a group's rows go in as one-station tasks' would
    place = {key: i for i, key in enumerate(chunk.stations)}
    picks = writer.stamp(sorted(result.picks, key=lambda p: place[p.station]))
    summary.new_picks += writer.write(picks, sorted(result.detections, key=lambda d: place[d.station]))
    summary.picks += len(picks)
    summary.detections += len(result.detections)
    summary.station_seconds += result.station_seconds
    summary.windows += result.windows
    for key, (first, last) in result.coverage.items():
        lo, hi = summary.coverage.get(key, (first, last))
        summary.coverage[key] = (min(lo, first), max(hi, last))
    if result.problems:
        summary.failed.append((chunk.label, "bad data: " + "; ".join(result.problems)))
        return
    counts = json.dumps({"task": chunk.task_key(settings), "station_seconds": result.station_seconds,
                         "windows": result.windows, "picks": len(picks), "detections": len(result.detections)})
    writer.catalog.set_states(dict.fromkeys(chunk.state_keys(settings), counts))
