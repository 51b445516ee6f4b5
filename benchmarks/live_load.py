"""Load test of ``eqt-monitor run``: N simulated stations over SeedLink, accelerated.

N stations are made from chile_2014's two real stations: the first ``--duration`` seconds of
CX.PB01 and CX.PB02 are written N/2 times each as miniSEED under synthetic codes ``XX.S0000`` …
(one file per station, in a temporary folder), served by ``eqt-monitor simulate --speed X``
and picked by ``eqt-monitor run`` (both subprocesses). From the daemon's ``/metrics`` it reports
pick latency p50/p95 (interpolated in the histogram's buckets), windows/s while data flowed, the
mean batch size and the daemon's RSS when it was ready and at the end; ``--json`` writes the same.

    python benchmarks/live_load.py --stations 200 --step 1000 --speed 1 --duration 3600 --json out.json
    python benchmarks/live_load.py --stations 200 --speed 3 4 5 6 --duration 600   # capacity at p95 <= 15 s

Real time is ``--speed 1``; a faster clock puts proportionally more load on the daemon (N
stations at speed X ≈ N·X stations in real time, minus per-station overheads).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import obspy
from common import CHILE_START, ROOT, shared_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_archive(folder: Path, stations: int, duration: float) -> list[str]:
    """``stations`` miniSEED files of synthetic stations (real chile data); returns their codes."""
    t0 = obspy.UTCDateTime(CHILE_START)
    stream = obspy.read(str(shared_dir() / "data/chile_2014/sds/2014/CX/*/HH?.D/*.121"), starttime=t0,
                        endtime=t0 + duration - 0.005)
    stream.merge(method=1, fill_value=0)
    codes = []
    for i in range(stations):
        code = f"S{i:04d}"
        copy = stream.select(station="PB01" if i % 2 == 0 else "PB02").copy()
        for tr in copy:
            tr.stats.network, tr.stats.station = "XX", code
        copy.write(str(folder / f"XX.{code}.mseed"), format="MSEED", reclen=512)
        codes.append(code)
    return codes


def write_config(folder: Path, codes: list[str], step: int) -> Path:
    lines = "".join(f"  - {{network: XX, station: {c}, channels: \"HH?\"}}\n" for c in codes)
    path = folder / "stations.yaml"
    path.write_text(f"stations:\n{lines}catalog: catalog.sqlite\nstate_dir: state\n"
                    f"model:\n  weights: {shared_dir() / 'models' / 'eqt_original.h5'}\n  step: {step}\n")
    return path


def scrape(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def quantile(series: dict[str, float], name: str, q: float) -> float:
    """The ``q`` quantile of histogram ``name``, linear within its buckets (as PromQL's histogram_quantile)."""
    buckets = sorted((float(k.split('le="')[1].split('"')[0]), v) for k, v in series.items()
                     if k.startswith(name + "_bucket{"))
    count = series.get(name + "_count", 0.0)
    if not count:
        return float("nan")
    rank, lo, below = q * count, 0.0, 0.0
    for le, cum in buckets:
        if cum >= rank:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * (rank - below) / max(cum - below, 1e-12)
        lo, below = le, cum
    return lo


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(args: argparse.Namespace, speed: float) -> dict:
    """One load run of ``args.stations`` stations served at ``speed``; the figures as a dict."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = [sys.executable, "-m", "eqt_monitor.cli"]
    with tempfile.TemporaryDirectory(prefix="eqt-live-load-") as tmp:
        folder = Path(tmp)
        (folder / "mseed").mkdir()
        codes = make_archive(folder / "mseed", args.stations, args.duration)
        config = write_config(folder, codes, args.step)
        port, mport = free_port(), free_port()
        log = open(folder / "run.log", "wb")
        daemon = subprocess.Popen([*cli, "run", "--config", str(config), "--source", f"seedlink://127.0.0.1:{port}",
                                   "--metrics-addr", f"127.0.0.1:{mport}", "--begin", CHILE_START],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        while not scrape(mport):
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited: see {folder / 'run.log'}")
            time.sleep(0.5)
        rss_start = rss_mb(daemon.pid)
        sim_log = folder / "simulate.log"
        sim = subprocess.Popen([*cli, "simulate", "--source", f"file://{folder / 'mseed'}", "--port", str(port),
                                "--speed", str(speed), "--start", CHILE_START],
                               stdout=open(sim_log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        t0 = time.monotonic()
        last_windows, last_change = -1.0, time.monotonic()
        try:
            while True:
                time.sleep(1.0)
                series = scrape(mport)
                windows = series.get("eqt_monitor_windows_predicted_total", 0.0)
                if windows != last_windows:
                    last_windows, last_change = windows, time.monotonic()
                released = "all data up to" in sim_log.read_text(errors="replace")
                if released and time.monotonic() - last_change > args.settle:
                    break
                if time.monotonic() - t0 > args.timeout:
                    print("timeout: the daemon did not catch up", file=sys.stderr)
                    break
            wall = last_change - t0
            rss_end = rss_mb(daemon.pid)
        finally:
            sim.send_signal(signal.SIGTERM)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            sim.wait(30)
    batches = series.get("eqt_monitor_inference_batch_size_count", 0.0)
    return {
        "stations": args.stations, "step": args.step, "speed": speed, "duration_s": args.duration,
        "station_equivalents_realtime": args.stations * speed,
        "wall_s": round(wall, 1), "windows": int(last_windows),
        "windows_per_s": round(last_windows / wall, 1) if wall > 0 else None,
        "mean_batch": round(series.get("eqt_monitor_inference_batch_size_sum", 0.0) / batches, 1) if batches else None,
        "picks": int(sum(v for k, v in series.items() if k.startswith("eqt_monitor_picks_total"))),
        "pick_latency_p50_s": round(quantile(series, "eqt_monitor_pick_latency_seconds", 0.5), 2),
        "pick_latency_p95_s": round(quantile(series, "eqt_monitor_pick_latency_seconds", 0.95), 2),
        "rss_start_mb": round(rss_start), "rss_end_mb": round(rss_end),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--step", type=int, default=1000, help="window step in samples (default 1000 = 10 s)")
    parser.add_argument("--speed", type=float, nargs="+", default=[1.0],
                        help="simulator clock speed-up (default 1: real time); several: one run each, and the "
                             "capacity is the most station-equivalents whose p95 pick latency is within --max-p95")
    parser.add_argument("--max-p95", type=float, default=15.0, help="pick latency p95 bound for the capacity (s)")
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of data (default 3600)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="give up after this many wall seconds")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="done when all data was sent and no window was predicted for this many seconds "
                             "(an overloaded daemon predicts its backlog in long calls; default 30)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    runs = []
    for speed in args.speed:
        runs.append(run(args, speed))
        print_run(runs[-1])
    result: dict = runs[0] if len(runs) == 1 else {"runs": runs, "max_p95_s": args.max_p95,
                                                   "capacity_station_equivalents": capacity(runs, args.max_p95)}
    if len(runs) > 1:
        print(f"capacity: {result['capacity_station_equivalents']} station-equivalents with pick latency p95 <= "
              f"{args.max_p95:g} s (step {args.step} samples)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


def print_run(result: dict) -> None:
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(flush=True)


def capacity(runs: list[dict], max_p95: float) -> float | None:
    """The most station-equivalents of a run whose pick latency p95 was within ``max_p95`` (None: none was)."""
    within = [r["station_equivalents_realtime"] for r in runs if r["pick_latency_p95_s"] <= max_p95]
    return max(within) if within else None


if __name__ == "__main__":
    main()
