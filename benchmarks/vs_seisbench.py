"""Our EqT against SeisBench's EQTransformer on the same CPU, per window and end to end.

    python benchmarks/vs_seisbench.py [--batches 32,64,128,256,512] [--hours 12] [--threads 2] [--json F]

Needs ``seisbench`` and ``torch`` importable beside this project (see benchmarks/README.md); it
installs nothing. SeisBench's model gets random weights (no download here; speed does not depend
on the weights). Both run in this process with the same number of threads, after warm-up, as the
median of ``--samples`` (>= 5) alternating samples, ours first and SeisBench first in turn.
Denormals are flushed to zero for torch before anything else touches it: flushing after
``set_num_threads`` left part of SeisBench's forward on a pool thread without the flush, in
denormal arithmetic, and inflated the ratio (17.9x in one outside run, 2.4-3.1x fair):

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
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import chile_stream, chile_windows, load_original, machine, replay_chile, timed, warm_up  # noqa: E402


def seisbench_model(threads: int):
    """SeisBench's EQTransformer as its 'original' weights are configured, random weights, eval mode,
    filtering 1-45 Hz before annotating (as EqT does). Denormals are flushed to zero, as TensorFlow
    does on CPU (``flush_denormals``, called before any torch thread exists)."""
    import seisbench.models as sbm
    import torch

    torch.set_num_threads(threads)  # after flush_denormals(), which main() calls first of all
    torch.manual_seed(0)
    model = sbm.EQTransformer(original_compatible=True, filter_args=("bandpass",),
                              filter_kwargs={"freqmin": 1.0, "freqmax": 45.0})
    return model.eval()


def flush_denormals() -> None:
    """Flush denormals to zero for torch before it starts a thread (each thread has its own FPU flags:
    set later, the flush misses the intra-op pool threads that exist by then)."""
    import torch

    if not torch.set_flush_denormal(True):
        raise SystemExit("vs_seisbench: this CPU cannot flush denormals for torch; the comparison would be unfair")


def alternating(first: Callable[[], float], second: Callable[[], float], samples: int) -> tuple[float, float]:
    """Medians of ``samples`` measurements of both, ``first`` then ``second`` in even samples and the
    other way round in odd ones (so neither always runs on a warmer or cooler machine)."""
    a, b = [], []
    for i in range(samples):
        if i % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return statistics.median(a), statistics.median(b)


def per_window(ours, theirs, windows, batches: list[int], repeats: int, samples: int) -> list[dict]:
    """ms per window (wall) of both models at each batch size: medians of alternating samples."""
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

        ours_s, theirs_s = alternating(lambda: timed(lambda: ours.predict(ours_in), repeats=repeats)[0],
                                       lambda: timed(run_theirs, repeats=repeats)[0], samples)
        rows.append({"batch": size, "ours_ms": ours_s / size * 1e3, "seisbench_ms": theirs_s / size * 1e3,
                     "load_average": os.getloadavg()[0]})
        print(f"  batch {size:4d}: ours {rows[-1]['ours_ms']:6.2f} ms/window, seisbench {rows[-1]['seisbench_ms']:6.2f}",
              flush=True)
    return rows


def end_to_end(ours, theirs, hours: float, ours_batch: int, theirs_batch: int, samples: int) -> dict:
    """Seconds for ``hours`` of both stations, medians of alternating samples: our replay and
    SeisBench's read + annotate."""
    import torch

    def annotate() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            theirs.annotate(chile_stream(hours), overlap=3000, batch_size=theirs_batch)
        return time.perf_counter() - t0

    warm_up(ours.predict, ours_batch)
    theirs.annotate(chile_stream(1 / 6), overlap=3000, batch_size=theirs_batch)
    summaries = []

    def replay() -> float:
        summaries.append(replay_chile(ours.predict, hours=hours, batch_size=ours_batch))
        return summaries[-1].wall_s

    ours_s, theirs_s = alternating(replay, annotate, samples)
    station_hours = summaries[0].station_hours
    return {"station_hours": station_hours, "ours_s": ours_s, "seisbench_s": theirs_s, "samples": samples,
            "ours_s_per_station_hour": ours_s / station_hours,
            "seisbench_s_per_station_hour": theirs_s / station_hours,
            "ratio": theirs_s / ours_s, "ours_batch": ours_batch, "seisbench_batch": theirs_batch,
            "load_average": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="32,64,128,256,512")
    parser.add_argument("--hours", type=float, default=12.0, help="hours of both stations end to end (12 = a station-day)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads; TensorFlow gets the same")
    parser.add_argument("--repeats", type=int, default=3, help="calls timed per sample")
    parser.add_argument("--samples", type=int, default=5, help="alternating samples per figure (median; >= 5)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.samples < 5:
        parser.error("--samples must be at least 5")
    try:
        import torch
    except ImportError as error:
        raise SystemExit(f"vs_seisbench needs seisbench and torch ({error}); see benchmarks/README.md") from None
    flush_denormals()  # first of all: before seisbench or set_num_threads starts any torch thread
    try:
        import seisbench
    except ImportError as error:
        raise SystemExit(f"vs_seisbench needs seisbench and torch ({error}); see benchmarks/README.md") from None
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    ours, theirs = load_original(), seisbench_model(args.threads)
    print(f"per window (wall ms, after warm-up; {args.threads} threads each)")
    rows = per_window(ours, theirs, chile_windows(max(batches)), batches, args.repeats, args.samples)
    best_ours = min(rows, key=lambda r: r["ours_ms"])
    best_theirs = min(rows, key=lambda r: r["seisbench_ms"])
    window = {"ours_ms": best_ours["ours_ms"], "seisbench_ms": best_theirs["seisbench_ms"],
              "ratio": best_theirs["seisbench_ms"] / best_ours["ours_ms"],
              "ours_batch": best_ours["batch"], "seisbench_batch": best_theirs["batch"], "rows": rows}
    print(f"best: ours {window['ours_ms']:.2f} ms (batch {window['ours_batch']}), seisbench "
          f"{window['seisbench_ms']:.2f} ms (batch {window['seisbench_batch']}): ratio {window['ratio']:.2f}")

    e2e = end_to_end(ours, theirs, args.hours, best_ours["batch"], best_theirs["batch"], args.samples)
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
