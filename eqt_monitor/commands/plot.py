"""``eqt-monitor plot``: one event's waveforms, picks and the model's D/P/S traces, as a PNG."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from eqt_monitor.catalog.backend import catalog_target
from eqt_monitor.commands.export import DB_HELP, open_existing
from eqt_monitor.errors import UserError

NAME = "plot"
HELP = ("draw an event's stations (nearest first) with picks and the model's D/P/S probabilities under them, "
        "or a station's helicorder (--helicorder NET.STA --day DAY) with its picks and events")

log = logging.getLogger(__name__)
MAX_SIDE_S = 3600.0  # --before/--after: the data and the model run are held in memory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``plot`` (DESIGN.md §3, plus where to re-read data and which model to re-run)."""
    parser.add_argument("event_id", metavar="EVENT_ID", nargs="?", help="event resource id, or the hash at its end")
    parser.add_argument("--helicorder", metavar="NET.STA", help="draw this station's day (helicorder) instead of an event")
    parser.add_argument("--day", help="helicorder day, UTC (e.g. 2014-05-01)")
    parser.add_argument("--start", metavar="HH:MM", default="00:00", help="helicorder start within the day (default 00:00)")
    parser.add_argument("--end", metavar="HH:MM", default="24:00", help="helicorder end within the day (default 24:00)")
    parser.add_argument("--db", type=catalog_target, required=True, help=DB_HELP)
    parser.add_argument("--out", type=Path, required=True, help="output PNG")
    parser.add_argument("--source", help="waveform source URI (default: the source of the catalog's last run)")
    parser.add_argument("--model", help="model to re-run (default: the last run's)")
    parser.add_argument("--weights", type=Path, help="weights file (default: the model's published weights)")
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), help="Keras backend")
    parser.add_argument("--before", type=float, default=5.0, help="seconds before the origin (default 5)")
    parser.add_argument("--after", type=float, default=40.0, help="seconds after the origin (default 40)")


def run(args: argparse.Namespace) -> int:
    """Fetch the waveforms, re-run the model around the event, draw (or draw a helicorder)."""
    if args.helicorder:
        return _helicorder(args)
    if not args.event_id:
        raise UserError("plot: give an EVENT_ID, or --helicorder NET.STA --day DAY")
    from eqt_monitor.model.spec import get_spec

    # the flags, catalog, event, sources and model name are checked before TensorFlow starts
    for flag, value in (("--before", args.before), ("--after", args.after)):
        if not 0 <= value <= MAX_SIDE_S:
            raise UserError(f"{flag}: must be between 0 and {MAX_SIDE_S:g} seconds, got {value}")
    with open_existing(args.db) as catalog:
        event = catalog.event(args.event_id)
        last = catalog.last_run()
    uris = _uris(args, last)
    name = args.model or (last.model if last else "original")
    get_spec(name)

    from eqt_monitor.model.backend import configure

    configure(args.backend)
    from obspy import UTCDateTime

    from eqt_monitor.driver import config_of_run, read_span
    from eqt_monitor.model.load import load_model
    from eqt_monitor.pipeline.engine import CONTEXT_S
    from eqt_monitor.plot import model_probabilities, plot_event

    loaded = load_model(name, args.weights)
    if last and not args.weights and loaded.weights_sha256 != last.weights_sha256:
        log.warning("the picks were made with weights %s, re-running with %s", last.weights_sha256, loaded.weights_sha256)
    stations = sorted({a.pick.station for a in event.arrivals})
    t0 = event.origin.time
    start, end = t0 - args.before - CONTEXT_S, t0 + args.after + CONTEXT_S
    stream = read_span(uris, stations, start, end)
    if not len(stream):
        raise UserError(f"event {event.short_id}: no waveforms of its {len(stations)} station(s) between "
                        f"{UTCDateTime(start)} and {UTCDateTime(end)} in {', '.join(uris)} (pass --source URI)")
    config = config_of_run(last, stations)
    probabilities = model_probabilities(stream, loaded.predict, config)
    out = plot_event(event, stream, probabilities, args.out, before=args.before, after=args.after,
                     orientations={s.key: s.orientation for s in config.stations})
    print(f"wrote {out} ({len(stations)} stations)")
    return 0


def _uris(args: argparse.Namespace, last) -> list[str]:
    """--source, else the sources of the catalog's last run (each checked to open)."""
    from eqt_monitor.sources import open_source

    uris = [args.source] if args.source else (last.source.split(",") if last else [])
    if not uris:
        raise UserError(f"--db {args.db}: no run recorded in the catalog; pass --source URI")
    for uri in uris:
        open_source(uri).close()
    return uris


def _day_span(day: str, start: str, end: str) -> tuple[float, float]:
    """``--day`` with ``--start``/``--end`` (HH:MM) as POSIX seconds."""
    from eqt_monitor.commands.export import parse_time

    t0 = parse_time(day, "--day")
    bounds = []
    for flag, value in (("--start", start), ("--end", end)):
        hh, _, mm = value.partition(":")
        if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) * 60 + int(mm) <= 1440 and int(mm) < 60):
            raise UserError(f"{flag}: expected HH:MM within the day, got {value!r}")
        bounds.append(t0 + int(hh) * 3600 + int(mm) * 60)
    if not bounds[1] > bounds[0]:
        raise UserError(f"--end ({end}) must be after --start ({start})")
    return bounds[0], bounds[1]


def _station_keys(catalog, net: str, sta: str) -> list:
    """The locations the catalog knows for ``NET.STA`` (its recorded coordinates and picks of any
    time; all channels of each), else the empty location: sources match the location exactly, so a
    span without picks must still ask for the station's own (e.g. ``00``)."""
    from eqt_monitor.records import StationKey

    ids = set(catalog.stations()) | set(catalog.last_pick_times())
    locations = sorted({i.split(".")[2] for i in ids if i.split(".")[:2] == [net, sta]})
    return [StationKey(net, sta, loc) for loc in locations or [""]]


def _helicorder(args: argparse.Namespace) -> int:
    """The station's vertical channel over the span from the archive, with the catalog's picks and events."""
    from eqt_monitor.driver import read_span
    from eqt_monitor.helicorder import plot_helicorder

    net, _, sta = args.helicorder.partition(".")
    if not net or not sta or "." in sta:
        raise UserError(f"--helicorder: expected NET.STA, got {args.helicorder!r}")
    if not args.day:
        raise UserError("--helicorder needs --day DAY (e.g. 2014-05-01)")
    start, end = _day_span(args.day, args.start, args.end)
    with open_existing(args.db) as catalog:
        last = catalog.last_run()
        picks = [p for p in catalog.picks(start, end) if (p.station.network, p.station.station) == (net, sta)]
        ids = {p.id for p in picks}
        events = [e for e in catalog.events(start, end) if any(a.pick_id in ids for a in e.arrivals)]
        keys = sorted({p.station for p in picks}) or _station_keys(catalog, net, sta)
    stream = read_span(_uris(args, last), keys, start, end)
    if not len(stream):
        raise UserError(f"--helicorder {args.helicorder}: no waveforms between {args.day} {args.start} and {args.end}")
    try:
        out = plot_helicorder(stream, picks, events, start, end, args.out)
    except ValueError as exc:
        raise UserError(f"--helicorder {args.helicorder}: {exc}") from None
    print(f"wrote {out} ({len(picks)} picks, {len(events)} events)")
    return 0
