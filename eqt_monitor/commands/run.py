"""``eqt-monitor run``: the live monitoring service (SeedLink or FDSN in, catalog and metrics out)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from eqt_monitor.errors import UserError

NAME = "run"
HELP = "monitor live: SeedLink/FDSN → picks → events in the catalog, Prometheus metrics (SIGHUP reloads stations)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the CLI contract (DESIGN.md §3) plus where to start without saved progress."""
    parser.add_argument("--config", type=Path, required=True, help="stations.yaml (re-read on SIGHUP)")
    parser.add_argument("--source", help="live source URI (seedlink://HOST:PORT, fdsn://HOST:PORT); overrides the config's")
    parser.add_argument("--db", type=Path, help="SQLite catalog (default: the config's catalog)")
    parser.add_argument("--metrics-addr", help="HOST:PORT for /metrics and /healthz (default: the config's, 127.0.0.1:9108)")
    parser.add_argument("--begin", help="UTC time to start stations without saved progress from (default: new data only)")
    parser.add_argument("--quakeml", type=Path, help="rolling QuakeML file (default: <state_dir>/events.xml)")
    parser.add_argument("--silent-after", type=float, default=120.0,
                        help="seconds without data before a station is flagged silent (default 120)")
    parser.add_argument("--poll-interval", type=float, default=30.0, help="seconds between FDSN polls (default 30)")
    parser.add_argument("--quality-every", type=float, default=3600.0,
                        help="seconds between the data-quality metrics' runs (PSD, clipping, timing, flat; default 3600)")
    parser.add_argument("--quality-span", type=float, default=3600.0,
                        help="seconds of each station's newest data they are computed over (default 3600)")
    parser.add_argument("--ppsd-length", type=float, default=3600.0,
                        help="PPSD segment length in seconds, at most --quality-span (default 3600)")


def run(args: argparse.Namespace) -> int:
    """Load config and model, then serve until SIGTERM."""
    from obspy import UTCDateTime

    from eqt_monitor.config import load_config
    from eqt_monitor.live.metrics import RECORDER

    config = load_config(args.config, recorder=RECORDER)
    try:
        begin = UTCDateTime(args.begin).timestamp if args.begin else None
    except Exception:
        raise UserError(f"--begin: not a UTC time: {args.begin!r} (e.g. 2014-05-01T00:00)") from None
    if min(args.silent_after, args.poll_interval, args.quality_every, args.quality_span, args.ppsd_length) <= 0:
        raise UserError("--silent-after, --poll-interval, --quality-every, --quality-span and --ppsd-length "
                        "must be positive")
    if args.ppsd_length > args.quality_span:
        raise UserError(f"--ppsd-length ({args.ppsd_length:g} s) must not exceed --quality-span "
                        f"({args.quality_span:g} s): no PSD segment would fit")

    from eqt_monitor.model.backend import configure

    configure(config.model.backend)
    from eqt_monitor.live import metrics
    from eqt_monitor.live.daemon import Daemon, DaemonSettings
    from eqt_monitor.live.quality import QualitySettings
    from eqt_monitor.model.load import load_predictor

    loaded, predict = load_predictor(config.model.name, config.model.weights, mc_dropout=config.model.mc_dropout,
                                     seed=config.model.mc_seed)
    sha = loaded.weights_sha256 or "random"
    metrics.set_model_info(config.model.name, sha, config.model.backend)
    settings = DaemonSettings(silent_after=args.silent_after, poll_every=args.poll_interval,
                              quality=QualitySettings(args.quality_every, args.quality_span, args.ppsd_length))
    daemon = Daemon(config, predict_fn=predict, model_name=config.model.name, weights_sha256=sha,
                    source=args.source, db=args.db, metrics_addr=args.metrics_addr, begin=begin,
                    quakeml=args.quakeml, settings=settings)
    return daemon.run()
