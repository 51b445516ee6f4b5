"""``eqt-monitor evaluate``: the 25 detection/picking metrics of a model on a labelled STEAD-format set."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from eqt_monitor.training import metrics as ev
from eqt_monitor.training.metrics import METRIC_NAMES

NAME = "evaluate"
HELP = "score a model on a labelled STEAD-format HDF5 + CSV (the 25 metrics of DESIGN.md §4)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``evaluate``."""
    parser.add_argument("--model", required=True, help="model name (original, conservative, or any variant)")
    parser.add_argument("--weights", help="weights file (.h5 Keras 2 whole model or .keras); default: the registry's")
    parser.add_argument("--hdf5", required=True, type=Path, help="STEAD-format waveform file")
    parser.add_argument("--csv", required=True, type=Path, help="STEAD-format metadata CSV (trace_name, trace_category)")
    parser.add_argument("--json", type=Path, help="write the metrics as JSON here ('-' for stdout)")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per model call (default 64)")
    parser.add_argument("--tolerance", type=float, default=ev.TOLERANCE_S, help="pick tolerance in seconds (default 0.5)")
    parser.add_argument("--detection-threshold", type=float, default=ev.DETECTION_THRESHOLD, help="default 0.3")
    parser.add_argument("--p-threshold", type=float, default=ev.P_THRESHOLD, help="default 0.1")
    parser.add_argument("--s-threshold", type=float, default=ev.S_THRESHOLD, help="default 0.1")
    parser.add_argument(
        "--member", action="append", default=[], metavar="MODEL[=WEIGHTS]", type=_member,
        help="another model to average probabilities with (an ensemble); repeatable; without =WEIGHTS the registry's",
    )  # fmt: skip
    parser.add_argument(
        "--tune-csv", type=Path, metavar="CSV",
        help="choose the P and S thresholds that maximise F1 on these traces of the same HDF5 (a validation split)",
    )  # fmt: skip


def _member(text: str) -> tuple[str, str | None]:
    name, _, weights = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MODEL or MODEL=WEIGHTS")
    return name, weights or None


def format_report(result: dict) -> str:
    """A plain-text report: header with model, weights and tolerance, then one metric per line."""
    lines = [
        f"model {result['model']}  weights sha256 {result['weights_sha256']}",
        f"{result['n_events']} earthquake traces; pick tolerance {result['tolerance_s']} s",
    ]
    if "ensemble" in result:
        lines.append("ensemble of " + ", ".join(f"{m['model']} ({(m['weights_sha256'] or 'random')[:12]})" for m in result["ensemble"]))
    if "thresholds" in result:
        t = result["thresholds"]
        lines.append(f"thresholds P {t['p_threshold']} S {t['s_threshold']} chosen on {t['chosen_on']}")
    for name in METRIC_NAMES:
        value = result[name]
        text = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append(f"  {name:<14} {text}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the report, write the JSON."""
    from eqt_monitor.model.backend import configure

    configure(None)
    from eqt_monitor.training.evaluate import evaluate  # Keras: imported only when evaluating

    result = evaluate(
        args.model,
        args.hdf5,
        args.csv,
        weights=args.weights,
        members=args.member,
        tune_csv=args.tune_csv,
        batch_size=args.batch_size,
        tolerance_s=args.tolerance,
        detection_threshold=args.detection_threshold,
        p_threshold=args.p_threshold,
        s_threshold=args.s_threshold,
    )
    text = json.dumps(result, indent=2)
    if args.json and str(args.json) == "-":
        print(text)
        return 0
    print(format_report(result))
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0
