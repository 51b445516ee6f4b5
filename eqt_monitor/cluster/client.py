"""The client of a cluster replay: connect, plan, skip finished chunks, gather, write, associate.

Results come back as they complete and are written through the one ``CatalogWriter`` in plan
order (a chunk waits for the chunks before it), so a run, or a run killed and re-run, leaves the
same rows in the same order. Each written chunk is recorded in the catalog's ``state`` table;
a re-run skips it. The client holds picks only (never waveforms).
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
from eqt_monitor.cluster.tasks import TASK_S, Chunk, ChunkResult, ModelRef, plan_chunks, run_chunk, settings_digest, subconfig
from eqt_monitor.config import MonitorConfig, cluster_spec_problem
from eqt_monitor.driver import CatalogWriter
from eqt_monitor.errors import UserError
from eqt_monitor.replay import ReplaySummary

log = logging.getLogger(__name__)

# tasks submitted ahead of the results written: keeps the scheduler's graph and the client's
# out-of-order results bounded however long the span is
IN_FLIGHT_PER_WORKER = 4
MIN_IN_FLIGHT = 64


@dataclass
class ClusterSummary(ReplaySummary):
    """A replay's summary plus the cluster's: chunks planned, skipped (finished before) and failed."""

    chunks: int = 0
    skipped: int = 0
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
                      cluster: str, source: str | None = None, chunk_s: float = TASK_S, group_size: int = 1,
                      locate: bool = True, progress: bool = True, association_block_s: float = BLOCK_S) -> ClusterSummary:
    """Replay ``[start, end)`` as (station group, chunk) tasks on ``cluster`` into ``catalog``, then
    (``locate``) associate the span's picks (in blocks of ``association_block_s`` when longer, see
    ``cluster.blocks``); see the module docstring."""
    t_wall = time.perf_counter()
    chunks = plan_chunks(config, source, start, end, chunk_s, group_size)
    settings = settings_digest(config, model)
    summary = ClusterSummary(stations=len(config.stations), chunks=len(chunks))
    todo: list[Chunk] = []
    for chunk in chunks:
        done = catalog.get_state(chunk.state_key(settings))
        if done is None:
            todo.append(chunk)
            continue
        counts = json.loads(done)
        summary.skipped += 1
        summary.station_seconds += counts["station_seconds"]
        summary.windows += counts["windows"]
        summary.picks += counts["picks"]
        summary.detections += counts["detections"]
    writer = CatalogWriter(catalog, model=model.name, weights_sha256=model.sha256)
    association = SpanAssociation(catalog, config, start, end, source, settings, association_block_s) if locate else None
    if todo:
        _run(todo, config, model, cluster, writer, settings, summary, association, progress)
    if association is not None:
        summary.events = association.finish()
    writer.record_run(config, sorted({c.uri for c in chunks}), {"start": start, "end": end, "cluster": cluster,
                                                                "chunk": chunk_s, "group_size": group_size})
    summary.wall_s = time.perf_counter() - t_wall
    return summary


def _run(todo: list[Chunk], config: MonitorConfig, model: ModelRef, cluster: str, writer: CatalogWriter,
         settings: str, summary: ClusterSummary, association: SpanAssociation | None, progress: bool) -> None:
    """Submit ``todo``, write results in plan order as they complete; tell ``association`` each time
    all chunks up to a time are written."""
    from distributed import KilledWorker, as_completed
    from tqdm import tqdm

    by_index = {c.index: c for c in todo}
    pending: dict[int, ChunkResult] = {}
    order = iter(todo)
    upcoming = next(order, None)
    with connect(cluster) as client:
        log.warning("%s", dashboard_line(client))
        chunks = iter(todo)
        futures: dict = {}

        def submit() -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                key = f"eqt-chunk-{chunk.index}-{chunk.state_key(settings)[-8:]}"
                future = client.submit(run_chunk, chunk, subconfig(config, chunk), model, key=key)
                futures[future] = chunk
                running.add(future)

        running = as_completed()
        for _ in range(max(MIN_IN_FLIGHT, IN_FLIGHT_PER_WORKER * len(client.scheduler_info()["workers"]))):
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
    picks = writer.stamp(result.picks)
    summary.new_picks += writer.write(picks, result.detections)
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
    counts = {"station_seconds": result.station_seconds, "windows": result.windows, "picks": len(picks),
              "detections": len(result.detections)}
    writer.catalog.set_state(chunk.state_key(settings), json.dumps(counts))
