"""The suite's own guard that $HOME stays as it was (``conftest.pytest_sessionfinish``) sees what
the product would write there: here a real ``train`` run with HOME pointed at an empty folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import home_changes, home_snapshot


def test_snapshot_sees_what_the_product_could_write_and_new_entries(tmp_path):
    (tmp_path / ".keras").mkdir()
    (tmp_path / ".keras" / "keras.json").write_text("{}")
    (tmp_path / "gone").write_text("b")
    (tmp_path / "clone" / "tests" / "__pycache__").mkdir(parents=True)  # a clone under $HOME
    before = home_snapshot(tmp_path)
    (tmp_path / ".keras" / "keras.json").write_text('{"changed": 1}')
    (tmp_path / "gone").unlink()
    (tmp_path / ".cache" / "eqt-monitor").mkdir(parents=True)
    (tmp_path / ".cache" / "eqt-monitor" / "trained.yaml").write_text("[]")
    (tmp_path / "clone" / "tests" / "__pycache__" / "x.pyc").write_bytes(b"pytest's own")
    changes = home_changes(before, home_snapshot(tmp_path))
    assert "+.cache/" in changes and "+.cache/eqt-monitor/trained.yaml" in changes and "-gone/" in changes
    assert "~.keras/keras.json" in changes
    assert not any("clone" in c for c in changes)


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
