"""``eqt-monitor replay``: the monitoring pipeline over an archived span, as fast as the machine allows."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from eqt_monitor.catalog.backend import catalog_target
from eqt_monitor.commands.export import DB_HELP
from eqt_monitor.commands.span_args import add_span_arguments, read_span
from eqt_monitor.errors import UserError

NAME = "replay"
HELP = "run the pipeline over archived data (SDS, miniSEED files, FDSN) and write picks to the catalog"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``replay`` (DESIGN.md §3)."""
    add_span_arguments(parser, config_help="stations.yaml",
                       inventory_help="StationXML file or fdsn://HOST[:PORT]?network=…&station=… (a station "
                       "service, cached in ./state): every station and channel in it, with coordinates")
    parser.add_argument("--model", help="model name (default: the config's, else original)")
    parser.add_argument("--weights", type=Path, help="weights file (.h5 Keras 2 or .keras); default: the published ones")
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), help="Keras backend (default: the config's)")
    parser.add_argument("--db", type=catalog_target,
                        help=DB_HELP + " (default: the config's catalog, else catalog.sqlite)")
    parser.add_argument("--picks-csv", type=Path, help="also write the picks in EQTransformer's X_prediction_results.csv columns")
    parser.add_argument("--quakeml", type=Path, help="also write the span's catalog as QuakeML 1.2 at the end")
    parser.add_argument("--probabilities", type=Path, help="folder for the D/P/S probability traces as miniSEED")
    parser.add_argument("--chunk", type=float, help="seconds of data read at a time (default 3600); with --cluster, "
                        "seconds per task (default 86400: each task reads 240 s of context, 0.3 %% of a day; its worker reads 3600 s at a time)")
    parser.add_argument("--no-events", action="store_true", help="store picks only: no association, location, magnitude")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cluster", help="run on Dask: local (a worker per core), local:N, or tcp://HOST:PORT "
                        "(a running scheduler); default: the config's 'cluster:', else in this process")
    parser.add_argument("--group", type=int, help="with --cluster: stations per task (default: enough tasks to keep "
                        "every worker busy, at most 16 stations each)")


def run(args: argparse.Namespace) -> int:
    """Load config and model, replay the span, print one summary line."""
    from eqt_monitor.driver import sources_by_station
    from eqt_monitor.model.spec import get_spec
    from eqt_monitor.pipeline.engine import CONTEXT_S
    from eqt_monitor.sources import open_source

    # every check that needs no model comes first: a mistake costs no TensorFlow start-up
    config, start, end = read_span(args)
    cluster = args.cluster or config.cluster
    if args.chunk is None and cluster:
        from eqt_monitor.cluster.tasks import TASK_S

        args.chunk = TASK_S
    elif args.chunk is None:
        args.chunk = 3600.0
    if not 0 < args.chunk <= 86400:
        raise UserError(f"--chunk: must be between 0 and 86400 seconds, got {args.chunk}")
    if cluster:
        from eqt_monitor.config import cluster_spec_problem

        if problem := cluster_spec_problem(cluster):
            raise UserError(f"--cluster: {problem}")
        if args.probabilities:
            raise UserError("--probabilities is not supported with --cluster (the client holds picks only)")
    if args.group is not None and args.group < 1:
        raise UserError(f"--group: must be at least 1 station per task, got {args.group}")
    name = args.model or config.model.name
    get_spec(name)
    if args.weights and not args.weights.is_file():
        raise UserError(f"--weights {args.weights}: weights file not found")
    groups = sources_by_station(config, args.source)
    found = False
    for uri, keys in groups.items():  # an unknown scheme, a missing or empty archive is named now
        with open_source(uri) as src:
            found = found or src.might_have_data(keys, start - CONTEXT_S, end + CONTEXT_S)
    if not found:
        from eqt_monitor.replay import no_data_error

        raise no_data_error(groups, start, end)

    from eqt_monitor.catalog.store import Catalog

    Catalog(args.db or config.catalog).close()  # a bad catalog file is named before Keras loads
    from eqt_monitor.model.backend import configure

    configure(args.backend or config.model.backend)
    from eqt_monitor.model.load import load_predictor
    from eqt_monitor.replay import replay_into_catalog

    weights = args.weights or (config.model.weights if name == config.model.name else None)
    if cluster:
        return _run_on_cluster(args, config, name, weights, cluster, start, end)
    loaded, predict = load_predictor(name, weights, mc_dropout=config.model.mc_dropout, seed=config.model.mc_seed)
    with Catalog(args.db or config.catalog) as catalog:
        summary = replay_into_catalog(
            config, catalog, start=start, end=end, predict_fn=predict, model_name=name,
            weights_sha256=loaded.weights_sha256 or "random", source=args.source, locate=not args.no_events,
            picks_csv=args.picks_csv, quakeml=args.quakeml, chunk_s=args.chunk, probabilities=args.probabilities,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    print(summary.line())
    for key, (first, last) in sorted(summary.coverage.items()):
        log.debug("%s: probabilities from %s to %s", key, first, last)
    return 0


def _run_on_cluster(args: argparse.Namespace, config, name: str, weights, cluster: str, start: float, end: float) -> int:
    """``--cluster``: the client resolves the weights (workers load them), replays on Dask and prints
    the summary line; failed chunks go to stderr and make the exit status 1."""
    from eqt_monitor.catalog.store import Catalog
    from eqt_monitor.cluster.client import replay_on_cluster
    from eqt_monitor.cluster.tasks import ModelRef
    from eqt_monitor.model.load import resolve_weights
    from eqt_monitor.model.registry import sha256_file
    from eqt_monitor.model.spec import get_spec
    from eqt_monitor.replay import export_span

    path = resolve_weights(get_spec(name), weights)
    model = ModelRef(name, str(path.resolve()) if path else None, sha256_file(path) if path else "random",
                     args.backend or config.model.backend, config.model.mc_dropout, config.model.mc_seed)
    with Catalog(args.db or config.catalog) as catalog:
        summary = replay_on_cluster(config, catalog, start=start, end=end, model=model, cluster=cluster,
                                    source=args.source, chunk_s=args.chunk, group_size=args.group,
                                    locate=not args.no_events, progress=not args.no_progress and sys.stderr.isatty())
        export_span(catalog, config, start, end, picks_csv=args.picks_csv, quakeml=args.quakeml)
    print(summary.line() + f", {summary.chunks} tasks ({summary.skipped} station-chunks done before)")
    if summary.failed:
        print(summary.failures(), file=sys.stderr)
        return 1
    return 0
