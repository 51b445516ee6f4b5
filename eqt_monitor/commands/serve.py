"""``eqt-monitor serve``: the FDSN event web service over a catalog, on waitress."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from eqt_monitor.errors import UserError

NAME = "serve"
HELP = "serve the catalog as an FDSN event web service 1.2 (/fdsnws/event/1/query: QuakeML or text)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``serve`` (DESIGN.md §3)."""
    from eqt_monitor.catalog.export import AGENCY
    from eqt_monitor.service.fdsnws import MAX_EVENTS

    parser.add_argument("--db", type=Path, required=True, help="SQLite catalog (read; a running daemon may write it)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free port, printed)")
    parser.add_argument("--agency", default=AGENCY, help=f"agency id in QuakeML and the contributor (default {AGENCY})")
    parser.add_argument("--max-events", type=int, default=MAX_EVENTS,
                        help=f"largest answer; more is a 413 (default {MAX_EVENTS})")
    parser.add_argument("--threads", type=int, default=4, help="request threads (default 4)")


def run(args: argparse.Namespace) -> int:
    """Open the catalog, bind, print the service URL, serve until interrupted."""
    import waitress

    from eqt_monitor.commands.export import open_existing
    from eqt_monitor.service.fdsnws import PREFIX, create_app

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected 0..65535")
    if args.max_events < 1 or args.threads < 1:
        raise UserError("--max-events and --threads must be at least 1")
    with open_existing(args.db) as catalog:
        app = create_app(catalog, agency=args.agency, max_events=args.max_events)
        try:
            server = waitress.create_server(app, host=args.host, port=args.port, threads=args.threads,
                                            ident="eqt-monitor", clear_untrusted_proxy_headers=True)
        except OSError as exc:
            raise UserError(f"--host {args.host} --port {args.port}: cannot listen ({exc.strerror})") from None
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"serving {args.db} on http://{host}:{server.effective_port}{PREFIX}/", flush=True)
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        try:
            server.run()
        finally:
            server.close()
    return 0
