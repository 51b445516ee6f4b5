"""``eqt-monitor compare``: the "better than the baseline in N of 25" table from evaluate results."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from eqt_monitor.training.compare import compare, load_results, to_json, to_markdown

NAME = "compare"
HELP = "compare evaluate results against a baseline: the 25 metrics, better values marked, N of 25"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``compare``."""
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULT.json", help="outputs of evaluate --json")
    parser.add_argument("--baseline", default="original", help="the column the others are compared with (default original)")
    parser.add_argument("--dataset", default="", help="name of the data set the results were scored on (for the header)")
    parser.add_argument("--markdown", type=Path, help="write the Markdown table here (default: stdout)")
    parser.add_argument("--json", type=Path, help="write the table as JSON here")


def run(args: argparse.Namespace) -> int:
    """Build the table and write it."""
    labels, results = load_results(args.results)
    table = compare(labels, results, args.baseline, args.dataset)
    markdown = to_markdown(table)
    if args.markdown:
        args.markdown.write_text(markdown, encoding="utf-8")
    else:
        print(markdown, end="")
    if args.json:
        args.json.write_text(json.dumps(to_json(table), indent=2) + "\n", encoding="utf-8")
    return 0
