"""The shipped systemd unit passes `systemd-analyze verify` (when the tool is present)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eqt_monitor import deploy

UNIT = deploy.path("eqt-monitor.service")


def test_unit_has_the_hardening_the_service_relies_on():
    lines = UNIT.read_text().splitlines()
    for setting in ("Type=notify", "Restart=on-failure", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "ReadWritePaths=/var/lib/eqt-monitor", "User=eqt-monitor", "WatchdogSec="):
        assert any(line.startswith(setting) for line in lines), setting


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_passes(tmp_path):
    # verify checks that ExecStart exists: point it at this environment's console script.
    exe = Path(sys.executable).with_name("eqt-monitor")
    if not exe.exists():
        pytest.skip("the eqt-monitor console script is not installed next to this Python")
    text = UNIT.read_text().replace("/opt/eqt-monitor/.venv/bin/eqt-monitor", str(exe))
    unit = tmp_path / "eqt-monitor.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [l for l in (result.stdout + result.stderr).splitlines() if "eqt-monitor.service" in l]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
