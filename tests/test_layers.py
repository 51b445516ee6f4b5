"""The package's layers are a checked contract: `lint-imports` (import-linter) with the contracts
in pyproject.toml passes, and a wrong import would fail it."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
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


def _design_layer_rows() -> list[str]:
    """The package/module cells of docs/DESIGN.md's layer table, top row first."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    return [line.split("|")[2] for line in text.splitlines() if re.match(r"\| \d+ \| `", line)]


def _cell_name(module: str) -> str:
    """How the layer table names ``eqt_monitor.X``: ``X/`` for a package, ``X.py`` for a module."""
    name = module.removeprefix("eqt_monitor.")
    return f"`{name}/`" if (ROOT / "eqt_monitor" / name).is_dir() else f"`{name}.py`"


def test_the_design_layer_table_is_the_contract():
    """Every module of a layer of the import-linter contract is in one row of DESIGN's table, the
    modules of one layer in the same row, and the rows in the contract's order."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        contracts = tomllib.load(f)["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    rows = _design_layer_rows()
    last = -1
    for layer in layers:
        names = [_cell_name(m.strip()) for m in layer.split("|")]
        found = {name: [i for i, row in enumerate(rows) if name in row] for name in names}
        assert all(len(at) == 1 for at in found.values()), f"DESIGN's layer table: {found}"
        at = {i for (i,) in found.values()}
        assert len(at) == 1 and min(at) >= last, f"DESIGN's layer table puts {layer!r} in rows {at}"
        last = min(at)
