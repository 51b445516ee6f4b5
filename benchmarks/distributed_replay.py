"""Replay on Dask vs the serial replay: chile_2014 (SDS, 2 stations), serial vs local:1 vs local:2.

    python benchmarks/distributed_replay.py [--hours 6] [--chunk 3600] [--workers 1,2] [--json F]

Serial is today's in-process ``replay`` (TensorFlow using every core). Each ``local:N`` is a
``LocalCluster`` of N single-threaded worker processes, warmed up first (model loaded, every batch
shape compiled on every worker: neither is in a timing), then ``replay_on_cluster`` over the same
span into a fresh catalog without association. Also measured: the cluster's start-up, the
scheduler's cost per task (no-op tasks through the same client) and the workers' peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CHILE_START, ROOT, load_original, machine, replay_chile, warm_up  # noqa: E402


def _warm_worker(ref, batch_size: int) -> int:
    """On a worker: load the model (the per-process cache) and compile every batch shape."""
    from eqt_monitor.cluster.tasks import worker_model

    warm_up(worker_model(ref)[1], batch_size)
    return os.getpid()


def _noop(x: int) -> int:
    return x


def scheduler_cost(client, n: int = 2000) -> float:
    """Seconds per task of submitting, running and gathering ``n`` no-op tasks."""
    t0 = time.perf_counter()
    client.gather(client.map(_noop, range(n), pure=False))
    return (time.perf_counter() - t0) / n


def on_cluster(workers: int, hours: float, chunk: float, ref) -> dict:
    """Start ``local:workers``, warm it, time one replay of the span; the figures."""
    import obspy
    from distributed import Client, LocalCluster

    from eqt_monitor.catalog.store import Catalog
    from eqt_monitor.cluster.client import replay_on_cluster
    from eqt_monitor.config import load_config

    config = load_config(ROOT / "stations.yaml")
    start = obspy.UTCDateTime(CHILE_START).timestamp
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, scheduler_kwargs={"dashboard": False},
                      silence_logs=40) as cluster, Client(cluster) as client:
        client.run(_warm_worker, ref, config.model.batch_size)
        startup = time.perf_counter() - t0
        per_task = scheduler_cost(client)
        with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp) / "c.sqlite") as catalog:
            s = replay_on_cluster(config, catalog, start=start, end=start + hours * 3600, model=ref,
                                  cluster=cluster.scheduler_address, chunk_s=chunk, locate=False, progress=False)
    return {"workers": workers, "chunks": s.chunks, "station_hours": s.station_hours, "wall_s": s.wall_s,
            "station_hours_per_s": s.station_hours / s.wall_s, "startup_s": startup, "scheduler_s_per_task": per_task,
            "task_s_mean": s.task_s / s.chunks, "worker_peak_rss_mb": s.peak_rss_mb, "picks": s.picks,
            "detections": s.detections, "client_write_s": s.write_s,
            "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--chunk", type=float, default=3600.0, help="seconds per task")
    parser.add_argument("--workers", default="1,2", help="comma-separated local:N to run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from eqt_monitor.cluster.tasks import ModelRef

    loaded = load_original()
    warm_up(loaded.predict, 64)
    serial = replay_chile(loaded.predict, hours=args.hours)
    rows = {"serial": {"workers": 0, "chunks": 1, "station_hours": serial.station_hours, "wall_s": serial.wall_s,
                       "station_hours_per_s": serial.station_hours / serial.wall_s, "picks": serial.picks}}
    ref = ModelRef("original", str(loaded.weights_path), loaded.weights_sha256)
    for n in (int(w) for w in args.workers.split(",")):
        rows[f"local:{n}"] = on_cluster(n, args.hours, args.chunk, ref)
    base = rows.get("local:1", {}).get("station_hours_per_s")
    for name, r in rows.items():
        r["speedup_vs_serial"] = r["station_hours_per_s"] / rows["serial"]["station_hours_per_s"]
        if base and r["workers"]:
            r["efficiency_vs_local1"] = r["station_hours_per_s"] / base / r["workers"]

    print(f"chile_2014, 2 stations, {args.hours:g} h, {args.chunk:g} s chunks; load average {os.getloadavg()[0]:.1f}")
    print(f"{'run':8s} {'tasks':>5s} {'st-h':>5s} {'wall s':>7s} {'st-h/s':>6s} {'vs ser':>6s} {'eff':>5s} "
          f"{'start s':>7s} {'ms/task sched':>13s} {'task s':>6s} {'RSS MB':>6s}")
    for name, r in rows.items():
        print(f"{name:8s} {r['chunks']:5d} {r['station_hours']:5.1f} {r['wall_s']:7.1f} {r['station_hours_per_s']:6.2f} "
              f"{r['speedup_vs_serial']:6.2f} {r.get('efficiency_vs_local1', float('nan')):5.2f} "
              f"{r.get('startup_s', 0):7.1f} {r.get('scheduler_s_per_task', 0) * 1e3:13.2f} "
              f"{r.get('task_s_mean', 0):6.2f} {r.get('worker_peak_rss_mb', 0):6.0f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "hours": args.hours, "chunk_s": args.chunk,
                                         "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
