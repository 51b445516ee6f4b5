"""End-to-end replay throughput of the original EqT on chile_2014 (SDS, 2 stations, 12 h).

    python benchmarks/replay_throughput.py [--hours 12] [--batch 64] [--paths fast,reference] [--json F]

Runs ``eqt_monitor.replay.replay`` (read miniSEED, window, preprocess, predict, stack, pick;
no association) over the first ``--hours`` of the repository's ``stations.yaml`` once per
prediction path, after a warm-up call at every batch shape the replay can use (compilation):
``fast`` is ``LoadedModel.predict`` (polyphase decoders, XLA), ``reference`` is
``LoadedModel.predict_reference`` (the model as built, uncompiled). Prints station-hours per
second, seconds per station-hour and ms per window (replay wall time / windows).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_original, machine, replay_chile, warm_up  # noqa: E402


def throughput(summary) -> dict:
    """The figures of one replay."""
    return {"station_hours": summary.station_hours, "windows": summary.windows, "wall_s": summary.wall_s,
            "station_hours_per_s": summary.station_hours / summary.wall_s,
            "s_per_station_hour": summary.wall_s / summary.station_hours,
            "ms_per_window": summary.wall_s / summary.windows * 1e3, "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--paths", default="fast,reference", help="comma-separated: fast, reference")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    loaded = load_original()
    paths = {"fast": loaded.predict, "reference": loaded.predict_reference}
    chosen = args.paths.split(",")
    if unknown := set(chosen) - set(paths):
        parser.error(f"--paths: unknown {', '.join(sorted(unknown))} (choose fast, reference)")
    rows = {}
    for name in chosen:
        warm_up(paths[name], args.batch)
        rows[name] = throughput(replay_chile(paths[name], hours=args.hours, batch_size=args.batch))

    print(f"chile_2014, 2 stations, {args.hours:g} h, batch {args.batch}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'path':10s} {'station-h':>9s} {'windows':>7s} {'wall s':>7s} {'st-h/s':>7s} {'s/st-h':>7s} {'ms/window':>9s}")
    for name, r in rows.items():
        print(f"{name:10s} {r['station_hours']:9.2f} {r['windows']:7d} {r['wall_s']:7.1f} {r['station_hours_per_s']:7.2f} "
              f"{r['s_per_station_hour']:7.3f} {r['ms_per_window']:9.2f}")
    if "fast" in rows and "reference" in rows:
        print(f"fast / reference speed-up: {rows['reference']['wall_s'] / rows['fast']['wall_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "hours": args.hours, "batch": args.batch,
                                         "paths": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
