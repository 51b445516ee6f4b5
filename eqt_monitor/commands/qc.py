"""``eqt-monitor qc``: noise PSDs (PPSD PNGs) and per-channel quality numbers over an archived span."""
from __future__ import annotations

import argparse
from pathlib import Path

from eqt_monitor.commands.span_args import add_span_arguments, read_span
from eqt_monitor.errors import UserError

NAME = "qc"
HELP = "data quality over a span: PPSD PNG per channel, PSD bands vs NLNM/NHNM, clipping, timing, flat hours"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``qc``."""
    add_span_arguments(parser, config_help="stations.yaml (its inventories give the responses)",
                       inventory_help="StationXML file or fdsn://… station service: its stations, with responses")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs and quality.json")
    parser.add_argument("--clip-counts", type=float, help="clip level in counts (default: the data type's range)")
    parser.add_argument("--ppsd-length", type=float, default=3600.0, help="seconds per PSD segment (default 3600)")


def run(args: argparse.Namespace) -> int:
    """Measure every configured channel, write the PNGs and quality.json, print one line per channel."""
    from eqt_monitor.driver import sources_by_station
    from eqt_monitor.locate import read_inventories
    from eqt_monitor.qc import QCSettings, station_quality, summary_line

    config, start, end = read_span(args)
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
