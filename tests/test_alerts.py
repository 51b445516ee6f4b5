"""The shipped Prometheus alert rules: valid for promtool, and built only on series the daemon exposes."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from eqt_monitor import deploy
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
