"""eqt_monitor/deploy/grafana-dashboard.json only uses metrics the registry defines (with the suffixes the
text format gives them), and shows every metric the registry has."""
from __future__ import annotations

import json
import re

from eqt_monitor import deploy
from eqt_monitor.live import metrics

DASHBOARD = deploy.path("grafana-dashboard.json")
SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"]}


def exposed_names() -> set[str]:
    """Every sample name the registry can expose, from the declared families of its text output."""
    metrics.ERRORS.labels(kind="dashboard_test")  # labelled families declare their TYPE anyway
    names = set()
    for family in metrics.REGISTRY.collect():
        names.update(family.name + s for s in SUFFIXES.get(family.type, [""]))
    return names


def dashboard_names() -> set[str]:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    assert exprs
    return {name for e in exprs for name in re.findall(r"\beqt_monitor_[a-z_]+", e)}


def test_every_dashboard_metric_exists_in_the_registry():
    unknown = dashboard_names() - exposed_names()
    assert not unknown, f"the dashboard uses metrics the registry does not have: {sorted(unknown)}"


def test_every_registry_metric_is_on_the_dashboard():
    used = {re.sub(r"_(total|bucket|sum|count|info)$", "", n) for n in dashboard_names()}
    families = {f.name for f in metrics.REGISTRY.collect()}
    assert families - used == set()


def test_the_check_sees_a_misspelt_name():
    assert "eqt_monitor_picks" not in exposed_names()  # counters only exist as _total
    assert "eqt_monitor_picks_total" in exposed_names()
