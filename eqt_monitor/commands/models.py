"""``eqt-monitor models``: list the variant zoo, fetch published weights."""
from __future__ import annotations

import argparse

from eqt_monitor.errors import WeightsError

NAME = "models"
HELP = "list model variants and their weights; fetch published weights (pull)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``models list`` and ``models pull NAME [--url URL | --weights PATH] [--cache DIR]``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every variant with its parameter count and known weights")
    pull = actions.add_parser("pull", help="fetch published weights into the cache and verify their sha256")
    pull.add_argument("name", metavar="NAME", help="published weight set (e.g. original, conservative)")
    source = pull.add_mutually_exclusive_group()
    source.add_argument("--url", help="download from this URL instead of the registry's")
    source.add_argument("--weights", metavar="PATH", help="install this local file instead of downloading (offline)")
    pull.add_argument("--cache", metavar="DIR", help="cache directory (default $EQT_MONITOR_CACHE or ~/.cache/eqt-monitor)")


def _weights_status(spec_name: str, name: str | None) -> str:
    """Published weights of the spec (if any), then every trained file ``train`` recorded for it."""
    from eqt_monitor.model.trained import trained

    status = [_published_status(name)] if name else []
    for entry in trained(spec_name):
        state = "" if entry.status() == "ok" else " CHANGED since training"
        status.append(f"trained (sha256 {entry.sha256[:12]}…){state} at {entry.path}")
    return "; ".join(status) or "none (train it first)"


def _published_status(name: str) -> str:
    from eqt_monitor.model import registry

    try:
        path = registry.find_local(name)
    except WeightsError as exc:
        return f"{name}: REFUSED ({exc})"
    weight_set = registry.get_weight_set(name)
    where = f"at {path}" if path else f"not downloaded (eqt-monitor models pull {name})"
    return f"{name} (sha256 {weight_set.sha256[:12]}…) {where}"


def list_models() -> list[tuple[str, int, str]]:
    """``(name, parameter count, weights status)`` for every spec in the zoo (counted from the spec:
    no model is built, so Keras is not loaded)."""
    from eqt_monitor.model.params import count_params
    from eqt_monitor.model.spec import list_specs

    return [(spec.name, count_params(spec), _weights_status(spec.name, spec.weights)) for spec in list_specs()]


def run(args: argparse.Namespace) -> int:
    """Print the zoo, or pull one weight set and print where it is."""
    from eqt_monitor.model import registry

    if args.action == "list":
        rows = list_models()
        width = max(len(name) for name, _, _ in rows)
        print(f"{'MODEL':<{width}}  {'PARAMETERS':>10}  WEIGHTS")
        for name, params, status in rows:
            print(f"{name:<{width}}  {params:>10,d}  {status}")
        return 0
    if args.weights:
        path = registry.install(args.name, args.weights, cache=args.cache)
    else:
        path = registry.pull(args.name, cache=args.cache, url=args.url)
    print(f"{args.name}: {path} (sha256 verified)")
    return 0
