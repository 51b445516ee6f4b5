"""``eqt-monitor export``: write the catalog's events as QuakeML 1.2 or CSV."""
from __future__ import annotations

import argparse
from pathlib import Path

from eqt_monitor.catalog.backend import catalog_target
from eqt_monitor.errors import UserError

NAME = "export"
DB_HELP = "the catalog: an SQLite file or postgresql://USER@HOST[:PORT]/DB"
HELP = "write the catalog (a time span of it) as QuakeML 1.2, an events CSV, or EQTransformer's picks CSV"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``export`` (DESIGN.md §3)."""
    from eqt_monitor.catalog.export import FORMATS

    parser.add_argument("--db", type=catalog_target, required=True, help=DB_HELP)
    parser.add_argument("--format", choices=FORMATS, required=True,
                        help="quakeml; csv (one row per event); eqt-csv (EQTransformer's X_prediction_results.csv)")
    parser.add_argument("--out", type=Path, required=True, help="output file")
    parser.add_argument("--start", help="span start, UTC (origin or detection time >= start)")
    parser.add_argument("--end", help="span end, UTC (exclusive)")


def parse_time(value: str | None, flag: str) -> float | None:
    """A UTC time flag as POSIX seconds (None stays None); UserError naming the flag when unreadable."""
    if value is None:
        return None
    from obspy import UTCDateTime

    try:
        return UTCDateTime(value).timestamp
    except Exception:
        raise UserError(f"{flag}: not a UTC time: {value!r} (e.g. 2020-10-01T00:00)") from None


def open_existing(path: Path | str):
    """The catalog at ``path`` (a file or a PostgreSQL database); UserError when there is no such file
    (instead of creating an empty one)."""
    from eqt_monitor.catalog.store import Catalog

    if isinstance(path, Path) and not path.is_file():
        raise UserError(f"--db {path}: no such catalog file")
    return Catalog(path)


def run(args: argparse.Namespace) -> int:
    """Export and print one line saying what was written."""
    from eqt_monitor.catalog.export import export

    start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    if start is not None and end is not None and end <= start:
        raise UserError(f"--end ({args.end}) must be after --start ({args.start})")
    with open_existing(args.db) as catalog:
        try:
            n = export(catalog, args.format, args.out, start=start, end=end)
        except OSError as exc:
            raise UserError(f"--out {args.out}: {exc.strerror}") from None
    unit = "events" if args.format in ("quakeml", "csv") else "detections"
    print(f"wrote {n} {unit} to {args.out} ({args.format})")
    return 0
