"""``eqt-monitor qc``: noise PSDs (PPSD PNGs) and per-channel quality numbers over an archived span."""
from __future__ import annotations

import argparse
from pathlib import Path

from eqt_monitor.errors import UserError

NAME = "qc"
HELP = "data quality over a span: PPSD PNG per channel, PSD bands vs NLNM/NHNM, clipping, timing, flat hours"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``qc``."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", type=Path, help="stations.yaml (its inventories give the responses)")
    which.add_argument("--inventory", type=Path, help="StationXML: its stations, with responses")
    parser.add_argument("--source", help="source URI (default: the config's)")
    parser.add_argument("--start", required=True, help="span start, UTC")
    parser.add_argument("--end", required=True, help="span end, UTC (exclusive)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs and quality.json")
    parser.add_argument("--clip-counts", type=float, help="clip level in counts (default: the data type's range)")
    parser.add_argument("--ppsd-length", type=float, default=3600.0, help="seconds per PSD segment (default 3600)")


def run(args: argparse.Namespace) -> int:
    """Measure every configured channel, write the PNGs and quality.json, print one line per channel."""
    from eqt_monitor.commands.export import parse_time
    from eqt_monitor.config import config_from_inventory, load_config
    from eqt_monitor.driver import sources_by_station
    from eqt_monitor.locate import read_inventories
    from eqt_monitor.qc import QCSettings, station_quality, summary_line

    config = load_config(args.config) if args.config else config_from_inventory(args.inventory)
    if args.inventory and not args.source:
        raise UserError("--inventory needs --source URI (where the waveforms are)")
    start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    if not end > start:
        raise UserError(f"--end ({args.end}) must be after --start ({args.start})")
    if not 60.0 <= args.ppsd_length <= end - start:
        raise UserError(f"--ppsd-length: must be between 60 s and the span ({end - start:g} s), got {args.ppsd_length:g}")
    settings = QCSettings(ppsd_length=args.ppsd_length, clip_counts=args.clip_counts)
    inventory = read_inventories(config.inventories)
    result = station_quality(sources_by_station(config, args.source), start, end, args.out, inventory=inventory,
                             settings=settings)
    qualities = [q for qs in result.values() for q in qs]
    if not qualities:
        raise UserError(f"no data for any of the {len(config.stations)} station(s) in the span")
    for q in qualities:
        print(summary_line(q))
    print(f"wrote {args.out / 'quality.json'} and {sum(q.png is not None for q in qualities)} PPSD PNG(s)")
    return 0
