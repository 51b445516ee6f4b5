"""``eqt-monitor experiment``: train and evaluate a list of variants on one data set, then compare."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "experiment"
HELP = "train + evaluate the variants of an experiment config on one split and write the compare table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``experiment``."""
    parser.add_argument("--config", required=True, type=Path, help="experiment YAML (see experiments/)")


def run(args: argparse.Namespace) -> int:
    """Run the experiments and print their tables."""
    from eqt_monitor.model.backend import configure

    configure(None)
    from eqt_monitor.training.experiment import run_experiments  # Keras: imported only when running

    for table in run_experiments(args.config):
        print(table.read_text(encoding="utf-8"), end="")
        print(f"(written to {table} and {table.with_suffix('.json')})")
    return 0
