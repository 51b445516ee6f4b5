"""The suite's own guard that $HOME stays as it was (``conftest.pytest_sessionfinish``) sees what
the product would write there: here a real ``train`` run with HOME pointed at an empty folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import home_changes, home_snapshot


def test_snapshot_sees_added_changed_and_removed_files(tmp_path):
    (tmp_path / "kept").write_text("a")
    (tmp_path / "gone").write_text("b")
    before = home_snapshot(tmp_path)
    (tmp_path / "kept").write_text("changed")
    (tmp_path / "gone").unlink()
    (tmp_path / ".cache" / "eqt-monitor").mkdir(parents=True)
    (tmp_path / ".cache" / "eqt-monitor" / "trained.yaml").write_text("[]")
    after = home_snapshot(tmp_path)
    assert {c[0] + Path(c[1:]).name for c in home_changes(before, after) if not c.endswith("eqt-monitor")} >= {
        "+.cache", "+trained.yaml", "-gone"}
    assert any(c.startswith("~") and c.endswith("kept") for c in home_changes(before, after))


def test_the_cache_is_the_tests_own(own_cache):
    from eqt_monitor.model.registry import cache_dir

    assert cache_dir() == own_cache and Path.home() not in own_cache.parents


def test_models_list_writes_nothing_to_a_fresh_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("EQT_MONITOR_CACHE", "KERAS_HOME", "MPLCONFIGDIR")}
    env["HOME"] = str(home)
    exe = Path(sys.executable).with_name("eqt-monitor")
    listed = subprocess.run([str(exe), "models", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert list(home.rglob("*")) == []
