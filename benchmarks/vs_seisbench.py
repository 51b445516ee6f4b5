"""Our EqT against SeisBench's EQTransformer on the same CPU, per window and end to end.

    python benchmarks/vs_seisbench.py [--batches 32,64,128,256,512] [--hours 12] [--threads 2] [--json F]

Needs ``seisbench`` and ``torch`` importable beside this project (see benchmarks/README.md); it
installs nothing. SeisBench's model gets random weights (no download here; speed does not depend
on the weights). Both run in this process with the same number of threads, alternating, after
warm-up:

- per window: the same preprocessed real chile_2014 windows through SeisBench's ``forward`` and
  our ``LoadedModel.predict`` at each batch size; the ratio compares each side's best batch size;
- end to end: a station-day (CX.PB01 + CX.PB02, 12 h each) from the SDS archive through SeisBench's
  ``annotate`` (overlap 3000, its best batch size; reading the archive included) and through our
  ``replay`` path (read, window, preprocess, predict, stack, pick; our best batch size).

Ratios > 1 mean ours is faster.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import chile_stream, chile_windows, load_original, machine, replay_chile, timed, warm_up  # noqa: E402


def seisbench_model(threads: int):
    """SeisBench's EQTransformer as its 'original' weights are configured, random weights, eval mode,
    filtering 1-45 Hz before annotating (as EqT does). Denormals are flushed to zero, as TensorFlow
    does on CPU: without it SeisBench's forward was ~3x slower here (random weights)."""
    import seisbench.models as sbm
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = sbm.EQTransformer(original_compatible=True, filter_args=("bandpass",),
                              filter_kwargs={"freqmin": 1.0, "freqmax": 45.0})
    return model.eval()


def per_window(ours, theirs, windows, batches: list[int], repeats: int) -> list[dict]:
    """ms per window (wall) of both models at each batch size, alternating within each size."""
    import torch

    from eqt_monitor.pipeline.windows import preprocess

    x = preprocess(windows)
    rows = []
    for size in batches:
        ours_in = x[:size]
        theirs_in = torch.from_numpy(x[:size].transpose(0, 2, 1).copy())

        def run_theirs():
            with torch.inference_mode():
                theirs(theirs_in)

        ours_s, _ = timed(lambda: ours.predict(ours_in), repeats=repeats)
        theirs_s, _ = timed(run_theirs, repeats=repeats)
        rows.append({"batch": size, "ours_ms": ours_s / size * 1e3, "seisbench_ms": theirs_s / size * 1e3,
                     "load_average": os.getloadavg()[0]})
        print(f"  batch {size:4d}: ours {rows[-1]['ours_ms']:6.2f} ms/window, seisbench {rows[-1]['seisbench_ms']:6.2f}",
              flush=True)
    return rows


def end_to_end(ours, theirs, hours: float, ours_batch: int, theirs_batch: int) -> dict:
    """Seconds for ``hours`` of both stations: our replay and SeisBench's read + annotate."""
    import torch

    def annotate():
        with torch.inference_mode():
            return theirs.annotate(chile_stream(hours), overlap=3000, batch_size=theirs_batch)

    warm_up(ours.predict, ours_batch)
    theirs.annotate(chile_stream(1 / 6), overlap=3000, batch_size=theirs_batch)
    summary = replay_chile(ours.predict, hours=hours, batch_size=ours_batch)
    t0 = time.perf_counter()
    annotate()
    theirs_s = time.perf_counter() - t0
    station_hours = summary.station_hours
    return {"station_hours": station_hours, "ours_s": summary.wall_s, "seisbench_s": theirs_s,
            "ours_s_per_station_hour": summary.wall_s / station_hours,
            "seisbench_s_per_station_hour": theirs_s / station_hours,
            "ratio": theirs_s / summary.wall_s, "ours_batch": ours_batch, "seisbench_batch": theirs_batch,
            "load_average": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="32,64,128,256,512")
    parser.add_argument("--hours", type=float, default=12.0, help="hours of both stations end to end (12 = a station-day)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads; TensorFlow gets the same")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        import seisbench
        import torch
    except ImportError as error:
        raise SystemExit(f"vs_seisbench needs seisbench and torch ({error}); see benchmarks/README.md") from None
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    ours, theirs = load_original(), seisbench_model(args.threads)
    print(f"per window (wall ms, after warm-up; {args.threads} threads each)")
    rows = per_window(ours, theirs, chile_windows(max(batches)), batches, args.repeats)
    best_ours = min(rows, key=lambda r: r["ours_ms"])
    best_theirs = min(rows, key=lambda r: r["seisbench_ms"])
    window = {"ours_ms": best_ours["ours_ms"], "seisbench_ms": best_theirs["seisbench_ms"],
              "ratio": best_theirs["seisbench_ms"] / best_ours["ours_ms"],
              "ours_batch": best_ours["batch"], "seisbench_batch": best_theirs["batch"], "rows": rows}
    print(f"best: ours {window['ours_ms']:.2f} ms (batch {window['ours_batch']}), seisbench "
          f"{window['seisbench_ms']:.2f} ms (batch {window['seisbench_batch']}): ratio {window['ratio']:.2f}")

    e2e = end_to_end(ours, theirs, args.hours, best_ours["batch"], best_theirs["batch"])
    print(f"end to end, {e2e['station_hours']:.1f} station-hours: ours {e2e['ours_s']:.1f} s "
          f"({e2e['ours_s_per_station_hour']:.3f} s/station-hour), seisbench {e2e['seisbench_s']:.1f} s "
          f"({e2e['seisbench_s_per_station_hour']:.3f}): ratio {e2e['ratio']:.2f}")
    if args.json:
        info = {**machine(), "torch": torch.__version__, "seisbench": seisbench.__version__,
                "tensorflow": tf.__version__, "threads": args.threads}
        args.json.write_text(json.dumps({"machine": info, "per_window": window, "end_to_end": e2e}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
