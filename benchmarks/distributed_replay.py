"""Replay on Dask vs the serial replay: chile_2014 (SDS, 2 stations) and salton_sea_2020 (16
stations, its 3 min repeated in time), serial vs local:1 vs local:2.

    python benchmarks/distributed_replay.py [--hours 12] [--salton-copies 20] [--samples 3]
                                            [--chunk 86400] [--runs serial,local:1,local:2] [--json F]

Serial is today's in-process ``replay`` (TensorFlow using every core). Each ``local:N`` is a
``LocalCluster`` of N single-threaded worker processes, started and warmed (model loaded, every
batch shape compiled, 10 min of each workload replayed once on every worker: none of it is in a
timing) for each sample, then
``replay_on_cluster`` over each workload into a fresh catalog without association. A sample runs
every run once, in an order rotated from sample to sample; the table shows medians.

Measured per run: wall and station-hours/s; process CPU seconds per station-hour (``getrusage``:
the client process, which holds the scheduler and the nannies of a LocalCluster, and each worker
process, read on the worker before and after) and the cores that makes (CPU / wall); the load
average before it; the scheduler's cost per task (no-op tasks submitted, run and gathered through
the same cluster, outside the timing); the workers' peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CHILE_START, ROOT, load_original, machine, shared_dir, warm_up  # noqa: E402

SALTON_S = 180.0  # salton_sea_2020 holds 2020-10-01T00:00-00:03 of every station


@dataclass(frozen=True)
class Workload:
    """A config, a span and the source its stations are read from."""

    name: str
    config: object
    start: float
    end: float
    source: str | None = None


def workloads(hours: float, salton_copies: int, folder: Path) -> list[Workload]:
    """chile_2014 over its first ``hours``; salton_sea_2020 written ``salton_copies`` times end to
    end (copy k shifted by k x 3 min) as miniSEED under ``folder``."""
    import obspy

    from eqt_monitor.config import config_from_inventory, load_config

    chile_start = obspy.UTCDateTime(CHILE_START).timestamp
    out = [Workload("chile_2014", load_config(ROOT / "stations.yaml"), chile_start, chile_start + hours * 3600)]
    if salton_copies:
        data = shared_dir() / "data" / "salton_sea_2020"
        for path in sorted((data / "mseed").glob("*.mseed")):
            stream = obspy.read(str(path))
            for k in range(salton_copies):
                copy = stream.copy()
                for trace in copy:
                    trace.stats.starttime += k * SALTON_S
                copy.write(str(folder / f"{path.stem}.{k:03d}.mseed"), format="MSEED")
        config = config_from_inventory(data / "stations.xml", [f"file://{folder}/*.mseed"])
        start = obspy.UTCDateTime("2020-10-01T00:00").timestamp
        out.append(Workload("salton_sea_2020", config, start, start + salton_copies * SALTON_S))
    return out


def _cpu_s() -> float:
    """User + system CPU seconds of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _warm_worker(ref, batch_size: int, works: list[Workload]) -> int:
    """On a worker: load the model (the per-process cache), compile every batch shape, and run
    10 min of each workload's first station once (the first task's imports and set-up)."""
    from eqt_monitor.cluster.tasks import plan_chunks, run_chunk, subconfig, worker_model

    warm_up(worker_model(ref)[1], batch_size)
    for work in works:
        chunk = plan_chunks(work.config, work.source, work.start, work.start + 600, 600)[0]
        run_chunk(chunk, subconfig(work.config, chunk), ref)
    return os.getpid()


def _noop(x: int) -> int:
    return x


def scheduler_cost(client, n: int = 1000) -> float:
    """Seconds per task of submitting, running and gathering ``n`` no-op tasks."""
    t0 = time.perf_counter()
    client.gather(client.map(_noop, range(n), pure=False))
    return (time.perf_counter() - t0) / n


def run_serial(work: Workload, loaded) -> dict:
    """The in-process replay of ``work``; its figures."""
    from eqt_monitor.replay import replay

    load, cpu = os.getloadavg()[0], _cpu_s()
    summary, _, _ = replay(work.config, start=work.start, end=work.end, predict_fn=loaded.predict, model_name="original",
                           weights_sha256=loaded.weights_sha256, source=work.source, progress=False)
    cpu = _cpu_s() - cpu
    return {"load_before": load, "wall_s": summary.wall_s, "station_hours": summary.station_hours,
            "picks": summary.picks, "detections": summary.detections, "tasks": 1, "cpu_client_s": cpu,
            "cpu_workers_s": 0.0}


def run_cluster(works: list[Workload], workers: int, ref, chunk: float) -> dict[str, dict]:
    """Start and warm ``local:workers``, replay each workload on it; the figures per workload."""
    from distributed import Client, LocalCluster

    from eqt_monitor.catalog.store import Catalog
    from eqt_monitor.cluster.client import replay_on_cluster

    rows = {}
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        client.run(_warm_worker, ref, works[0].config.model.batch_size, works)
        startup = time.perf_counter() - t0
        per_task = scheduler_cost(client)
        for work in works:
            load, cpu, before = os.getloadavg()[0], _cpu_s(), client.run(_cpu_s)
            with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp) / "c.sqlite") as catalog:
                s = replay_on_cluster(work.config, catalog, start=work.start, end=work.end, model=ref,
                                      cluster=cluster.scheduler_address, source=work.source, chunk_s=chunk,
                                      locate=False, progress=False)
            cpu, after = _cpu_s() - cpu, client.run(_cpu_s)
            rows[work.name] = {"load_before": load, "wall_s": s.wall_s, "station_hours": s.station_hours,
                               "picks": s.picks, "detections": s.detections, "tasks": s.chunks,
                               "failed": len(s.failed), "cpu_client_s": cpu,
                               "cpu_workers_s": sum(after[w] - before[w] for w in after if w in before),
                               "task_s_mean": s.task_s / max(1, s.chunks), "client_write_s": s.write_s,
                               "worker_peak_rss_mb": s.peak_rss_mb, "startup_s": startup,
                               "scheduler_ms_per_task": per_task * 1e3}
    return rows


def median_row(samples: list[dict]) -> dict:
    """Medians of a run's samples (load averages listed), with the derived rates."""
    row = {k: statistics.median(s[k] for s in samples) for k in samples[0] if k != "load_before"}
    row["loads"] = [round(s["load_before"], 2) for s in samples]
    cpu = [s["cpu_client_s"] + s["cpu_workers_s"] for s in samples]
    row["cpu_s_per_station_hour"] = statistics.median(c / s["station_hours"] for c, s in zip(cpu, samples))
    row["cores_used"] = statistics.median(c / s["wall_s"] for c, s in zip(cpu, samples))
    row["station_hours_per_s"] = statistics.median(s["station_hours"] / s["wall_s"] for s in samples)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=12.0, help="chile_2014 hours (x 2 stations)")
    parser.add_argument("--salton-copies", type=int, default=20, help="salton_sea_2020's 3 min written N times end to end")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--chunk", type=float, default=86400.0, help="seconds per task (replay --cluster's default)")
    parser.add_argument("--runs", default="serial,local:1,local:2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from eqt_monitor.cluster.tasks import ModelRef

    runs = args.runs.split(",")
    loaded = load_original()
    warm_up(loaded.predict, 64)
    ref = ModelRef("original", str(loaded.weights_path), loaded.weights_sha256)
    samples: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        works = workloads(args.hours, args.salton_copies, Path(tmp))
        for i in range(args.samples):
            for run in runs[i % len(runs):] + runs[:i % len(runs)]:  # rotated: each run in each place
                if run == "serial":
                    got = {w.name: run_serial(w, loaded) for w in works}
                else:
                    got = run_cluster(works, int(run.partition(":")[2]), ref, args.chunk)
                for name, row in got.items():
                    samples.setdefault((name, run), []).append(row)
                print(f"sample {i + 1}/{args.samples} {run}: "
                      + ", ".join(f"{n} {r['wall_s']:.1f} s (load {r['load_before']:.1f})" for n, r in got.items()),
                      file=sys.stderr)
    table = {f"{name} {run}": median_row(rows) for (name, run), rows in samples.items()}
    for (name, run), row in zip(samples, table.values()):
        serial, local1 = table.get(f"{name} serial"), table.get(f"{name} local:1")
        if serial:
            row["speedup_vs_serial"] = row["station_hours_per_s"] / serial["station_hours_per_s"]
        if local1 and run.startswith("local:"):
            row["efficiency_vs_local1"] = row["station_hours_per_s"] / local1["station_hours_per_s"] / int(run[6:])

    print(f"median of {args.samples} sample(s), {args.chunk:g} s tasks; chile_2014 2 stations x {args.hours:g} h, "
          f"salton_sea_2020 16 stations x {args.salton_copies * SALTON_S / 60:g} min")
    print(f"{'workload run':24s} {'tasks':>5s} {'st-h':>5s} {'wall s':>7s} {'st-h/s':>6s} {'vs ser':>6s} {'eff':>5s} "
          f"{'CPU s/st-h':>10s} {'client':>6s} {'cores':>5s} {'sched ms':>8s} {'RSS MB':>6s} {'picks':>6s}  loads")
    for label, r in table.items():
        print(f"{label:24s} {r['tasks']:5.0f} {r['station_hours']:5.1f} {r['wall_s']:7.1f} {r['station_hours_per_s']:6.2f} "
              f"{r.get('speedup_vs_serial', float('nan')):6.2f} {r.get('efficiency_vs_local1', float('nan')):5.2f} "
              f"{r['cpu_s_per_station_hour']:10.2f} {r['cpu_client_s'] / r['station_hours']:6.2f} {r['cores_used']:5.2f} "
              f"{r.get('scheduler_ms_per_task', 0):8.2f} {r.get('worker_peak_rss_mb', 0):6.0f} {r['picks']:6.0f}  {r['loads']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "hours": args.hours, "salton_copies": args.salton_copies,
                                         "chunk_s": args.chunk, "samples": args.samples, "runs": table,
                                         "raw": {f"{n} {r}": rows for (n, r), rows in samples.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
