"""Flags and checks shared by the commands that run over an archived span (``replay``, ``qc``):
which stations (a config or an inventory), where the data are, and the span."""
from __future__ import annotations

import argparse
from pathlib import Path

from eqt_monitor.errors import UserError


def add_span_arguments(parser: argparse.ArgumentParser, *, config_help: str, inventory_help: str) -> None:
    """``--config | --inventory``, ``--source``, ``--start``, ``--end``."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", type=Path, help=config_help)
    which.add_argument("--inventory", help=inventory_help)
    parser.add_argument("--source", help="source URI (sds:///…, file:///…, fdsn://host:port); overrides the config's")
    parser.add_argument("--start", required=True, help="span start, UTC (e.g. 2014-05-01T00:00)")
    parser.add_argument("--end", required=True, help="span end, UTC (exclusive)")


def read_span(args: argparse.Namespace):
    """``(MonitorConfig, start, end)`` from those flags; ``UserError`` naming the flag at fault."""
    from eqt_monitor.commands.export import parse_time
    from eqt_monitor.config import config_from_inventory, load_config

    config = load_config(args.config) if args.config else config_from_inventory(args.inventory)
    if args.inventory and not args.source:
        raise UserError("--inventory needs --source URI (where the waveforms are)")
    start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    if not end > start:
        raise UserError(f"--end ({args.end}) must be after --start ({args.start})")
    return config, start, end
