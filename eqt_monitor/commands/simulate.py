"""``eqt-monitor simulate``: serve an archive over SeedLink v3 in (accelerated) real time."""
from __future__ import annotations

import argparse
import logging
import signal

from eqt_monitor.errors import UserError

NAME = "simulate"
HELP = "SeedLink v3 server streaming an archive as 512-byte miniSEED records in (accelerated) real time"

log = logging.getLogger(__name__)


def _time(text: str) -> float:
    from obspy import UTCDateTime

    try:
        return UTCDateTime(text).timestamp
    except Exception as exc:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of DESIGN.md §3: --source URI --port N [--speed X] [--start T] (+ --host, --end, --buffer)."""
    parser.add_argument("--source", required=True, help="archive to stream: sds:///PATH or file:///PATH-OR-GLOB")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--speed", type=float, default=1.0, help="clock speed-up factor (default 1)")
    parser.add_argument("--start", type=_time, help="simulated start time (default: the first sample)")
    parser.add_argument("--end", type=_time, help="stop releasing records at this time (default: the last sample)")
    parser.add_argument("--buffer", type=int, default=100_000,
                        help="released records kept for resuming clients (default 100000, about 52 MB)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; exits 0."""
    from eqt_monitor.sim.server import SeedLinkServer

    if args.buffer < 1:
        raise UserError(f"simulate: --buffer must be at least 1, got {args.buffer}")
    from obspy import UTCDateTime

    server = SeedLinkServer(args.source, host=args.host, port=args.port, speed=args.speed, start=args.start,
                            end=args.end, buffer_records=args.buffer).start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    log.info("simulate: serving %d stations (%d channels) of %s from %s at %gx on %s:%d",
             len(server.stations), len(server.archive.channels), args.source, UTCDateTime(server.start_time),
             args.speed, args.host, server.port)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0
