"""The package's layers are a checked contract: `lint-imports` (import-linter) with the contracts
in pyproject.toml passes, and a wrong import would fail it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent)})


@pytest.mark.skipif(not Path(LINT).exists(), reason="import-linter is not installed (pip install -e '.[test]')")
def test_every_layer_contract_is_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "BROKEN" not in result.stdout and result.stdout.count("KEPT") >= 4


@pytest.mark.skipif(not Path(LINT).exists(), reason="import-linter is not installed (pip install -e '.[test]')")
def test_a_stage_importing_the_live_metrics_is_caught(tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "eqt_monitor", copy / "eqt_monitor", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    picker = copy / "eqt_monitor" / "pipeline" / "picker.py"
    picker.write_text(picker.read_text() + "\nfrom eqt_monitor.live import metrics  # noqa: E402,F401\n")
    result = _lint(copy)
    assert result.returncode != 0
    assert "eqt_monitor.pipeline.picker -> eqt_monitor.live.metrics" in result.stdout
