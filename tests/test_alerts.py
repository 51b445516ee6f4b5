"""The shipped Prometheus alert rules: valid for promtool, and built only on series the daemon exposes."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from eqt_monitor import deploy
from eqt_monitor.live import metrics
from test_dashboard import exposed_names

ALERTS = deploy.path("alerts.yml")
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")
# what the issue asks to be paged for, by the alert that covers it
REQUIRED = {"EqtMonitorDown", "EqtMonitorStationSilent", "EqtMonitorDataLatencyHigh", "EqtMonitorNoPicks",
            "EqtMonitorCatalogNotWritable", "EqtMonitorAssociationBacklog"}


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_every_series_a_rule_uses_is_exposed_by_the_daemon():
    used = {name for rule in rules() for name in re.findall(r"\beqt_monitor_[a-z_]+", rule["expr"])}
    assert used and not used - exposed_names(), sorted(used - exposed_names())


def test_the_rules_cover_what_an_operator_is_paged_for():
    names = {rule["alert"] for rule in rules()}
    assert REQUIRED <= names
    assert all(rule.get("for") and rule["labels"]["severity"] in ("warning", "critical") for rule in rules())


@pytest.mark.skipif(not PROMTOOL, reason="promtool is not installed (Debian: apt-get install prometheus)")
def test_promtool_check_rules_passes():
    result = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.mark.skipif(not PROMTOOL, reason="promtool is not installed (Debian: apt-get install prometheus)")
def test_promtool_rule_unit_tests_pass():
    """tests/data/alerts_test.yml: no picks for an hour with the series at 0 fires; picks without any
    association (no lag sample) fires; a growing lag fires, a small one does not."""
    unit = pathlib.Path(__file__).parent / "data" / "alerts_test.yml"
    result = subprocess.run([PROMTOOL, "test", "rules", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_fresh_daemon_exposes_picks_at_zero_and_no_association_lag():
    """What the two rules rely on, in a fresh interpreter (no pick, no association yet): both phase series
    exist at 0 (so `increase` is 0, not empty) and the lag has no sample (so "never associated" is absent)."""
    code = "from prometheus_client import generate_latest; from eqt_monitor.live import metrics; " \
           "print(generate_latest(metrics.REGISTRY).decode())"
    text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True).stdout
    assert 'eqt_monitor_picks_total{phase="P"} 0.0' in text and 'eqt_monitor_picks_total{phase="S"} 0.0' in text
    assert "# TYPE eqt_monitor_association_lag_seconds gauge" in text
    assert not re.search(r"^eqt_monitor_association_lag_seconds ", text, re.M)


def test_the_association_lag_is_measured_at_scrape_time():
    """After an advance the lag keeps growing while association stands still (no frozen value)."""
    metrics.ASSOCIATION_LAG.set(5.0)
    first = sample()
    time.sleep(0.3)
    assert 5.0 <= first < 5.2 and sample() >= first + 0.29


def sample() -> float:
    return metrics.REGISTRY.get_sample_value("eqt_monitor_association_lag_seconds")
