"""Soak test of ``eqt-monitor run``: hours of accelerated data, the RSS of every process over time.

N synthetic stations (``live_load.py``'s copies of chile_2014's CX.PB01/PB02) served by
``eqt-monitor simulate --speed X`` and picked by the daemon, N·X station-equivalents in real time,
for ``--hours`` of data time. Every ``--sample`` wall seconds it reads the RSS of the daemon and of the
simulator (``/proc``) and the daemon's ``/metrics``. With ``--tracemalloc`` the daemon runs under
``traced_daemon.py`` and takes a tracemalloc snapshot when half of the data has been sent and one at the
end; the report lists the source lines whose allocations grew most between the two, and tracemalloc's
own memory at both (the RSS figures include it, so their growth is an upper bound). Growth is measured over the second half (the first
fills buffers and compiles the model's batch shapes).

    python benchmarks/soak.py --stations 60 --speed 10 --hours 6 --tracemalloc --json soak.json --png soak.png
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from common import CHILE_START, ROOT, machine
from live_load import free_port, make_archive, quantile, rss_mb, scrape, write_config

HERE = Path(__file__).resolve().parent


def snapshot(daemon: subprocess.Popen, folder: Path, k: int, timeout: float = 300.0) -> tuple[tracemalloc.Snapshot, float]:
    """Ask the traced daemon for snapshot ``k``; returns it and tracemalloc's own memory in MB."""
    daemon.send_signal(signal.SIGUSR2)
    meta = folder / f"snapshot{k}.json"
    deadline = time.monotonic() + timeout
    while not meta.exists():
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise SystemExit(f"the daemon wrote no snapshot {k}")
        time.sleep(0.5)
    return tracemalloc.Snapshot.load(str(folder / f"snapshot{k}.pickle")), json.loads(meta.read_text())["tracemalloc_mb"]


def growth(first: tracemalloc.Snapshot, second: tracemalloc.Snapshot, top: int = 15) -> list[dict]:
    """The ``top`` source lines whose live allocations grew most from ``first`` to ``second``."""
    keep = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    stats = second.filter_traces(keep).compare_to(first.filter_traces(keep), "lineno")
    return [{"where": f"{s.traceback[0].filename.replace(str(ROOT) + os.sep, '')}:{s.traceback[0].lineno}",
             "grew_kb": round(s.size_diff / 1024, 1), "now_kb": round(s.size / 1024, 1), "blocks_grew": s.count_diff}
            for s in stats[:top]]


def soak(args: argparse.Namespace) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = [sys.executable, "-m", "eqt_monitor.cli"]
    duration = args.hours * 3600.0
    samples: list[dict] = []
    result: dict = {"stations": args.stations, "speed": args.speed, "hours": args.hours, "step": args.step,
                    "station_equivalents_realtime": args.stations * args.speed, "tracemalloc": args.tracemalloc}
    with tempfile.TemporaryDirectory(prefix="eqt-soak-") as tmp:
        folder = Path(tmp)
        (folder / "mseed").mkdir()
        codes = make_archive(folder / "mseed", args.stations, duration)
        config = write_config(folder, codes, args.step)
        port, mport = free_port(), free_port()
        daemon_cmd = ([sys.executable, str(HERE / "traced_daemon.py"), str(folder / "snapshots")] if args.tracemalloc
                      else cli)
        daemon = subprocess.Popen([*daemon_cmd, "run", "--config", str(config), "--source", f"seedlink://127.0.0.1:{port}",
                                   "--metrics-addr", f"127.0.0.1:{mport}", "--begin", CHILE_START],
                                  stdout=open(folder / "run.log", "wb"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        while not scrape(mport):
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited: {(folder / 'run.log').read_text()[-2000:]}")
            time.sleep(0.5)
        result["rss_ready_mb"] = round(rss_mb(daemon.pid), 1)
        sim_log = folder / "simulate.log"
        sim = subprocess.Popen([*cli, "simulate", "--source", f"file://{folder / 'mseed'}", "--port", str(port),
                                "--speed", str(args.speed), "--start", CHILE_START],
                               stdout=open(sim_log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        t0 = time.monotonic()
        snaps: list[tuple[tracemalloc.Snapshot, float]] = []
        last_windows, last_change = -1.0, time.monotonic()
        try:
            while True:
                time.sleep(args.sample)
                wall = time.monotonic() - t0
                data_h = min(wall * args.speed, duration) / 3600.0
                if args.tracemalloc and not snaps and data_h >= args.hours / 2:
                    snaps.append(snapshot(daemon, folder / "snapshots", 1))
                series = scrape(mport)
                windows = series.get("eqt_monitor_windows_predicted_total", 0.0)
                if windows != last_windows:
                    last_windows, last_change = windows, time.monotonic()
                samples.append({"wall_s": round(wall, 1), "data_h": round(data_h, 3),
                                "daemon_mb": round(rss_mb(daemon.pid), 1),
                                "simulator_mb": round(rss_mb(sim.pid), 1), "windows": int(windows),
                                "load_average": os.getloadavg()[0]})
                released = "all data up to" in sim_log.read_text(errors="replace")
                if released and time.monotonic() - last_change > args.settle:
                    break
                if wall > args.timeout:
                    print("timeout: the daemon did not catch up", file=sys.stderr)
                    break
            if args.tracemalloc:
                snaps.append(snapshot(daemon, folder / "snapshots", 2))
                result["tracemalloc_mb"] = [round(s[1], 1) for s in snaps]
                result["grew_most"] = growth(snaps[0][0], snaps[1][0])
        finally:
            sim.send_signal(signal.SIGTERM)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(120)
            sim.wait(30)
    half = min(samples, key=lambda s: abs(s["data_h"] - args.hours / 2))
    end = samples[-1]
    result.update({
        "windows": end["windows"], "wall_s": end["wall_s"],
        "picks": int(sum(v for k, v in series.items() if k.startswith("eqt_monitor_picks_total"))),
        "pick_latency_p95_s": round(quantile(series, "eqt_monitor_pick_latency_seconds", 0.95), 2),
        "daemon_mb_half": half["daemon_mb"], "daemon_mb_end": end["daemon_mb"],
        "daemon_growth_second_half_pct": round(100 * (end["daemon_mb"] / half["daemon_mb"] - 1), 2),
        "daemon_mb_per_station_above_ready": round((end["daemon_mb"] - result["rss_ready_mb"]) / args.stations, 2),
        "simulator_mb_half": half["simulator_mb"], "simulator_mb_end": end["simulator_mb"],
        "simulator_growth_second_half_pct": round(100 * (end["simulator_mb"] / half["simulator_mb"] - 1), 2),
        "machine": machine(), "samples": samples,
    })
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [s["data_h"] for s in result["samples"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(hours, [s["daemon_mb"] for s in result["samples"]], label="daemon (eqt-monitor run)")
    ax.plot(hours, [s["simulator_mb"] for s in result["samples"]], label="SeedLink simulator")
    ax.axvline(result["hours"] / 2, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("data time (h)")
    ax.set_ylabel("RSS (MB)" + (", tracemalloc's own memory included" if result["tracemalloc"] else ""))
    ax.set_ylim(bottom=0)
    ax.set_title(f"soak: {result['stations']} stations at {result['speed']:g}x = "
                 f"{result['station_equivalents_realtime']:g} station-equivalents, {result['hours']:g} h of data")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=60)
    parser.add_argument("--speed", type=float, default=10.0, help="simulator clock speed-up (default 10)")
    parser.add_argument("--hours", type=float, default=6.0, help="hours of data time (default 6; chile_2014 holds 12)")
    parser.add_argument("--step", type=int, default=1000, help="window step in samples (default 1000 = 10 s)")
    parser.add_argument("--sample", type=float, default=20.0, help="wall seconds between RSS samples")
    parser.add_argument("--settle", type=float, default=30.0, help="done when all data was sent and nothing was predicted for this long")
    parser.add_argument("--timeout", type=float, default=14400.0)
    parser.add_argument("--tracemalloc", action="store_true", help="snapshots of the daemon at half time and at the end")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    result = soak(args)
    for key, value in result.items():
        if key not in ("samples", "grew_most", "machine"):
            print(f"{key:<36} {value}")
    for row in result.get("grew_most", []):
        print(f"  {row['grew_kb']:>10.1f} kB  {row['blocks_grew']:>8d} blocks  {row['where']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.png:
        plot(result, args.png)


if __name__ == "__main__":
    main()
