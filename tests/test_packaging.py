"""The wheel holds everything a service install needs, and the README's commands are what CI runs."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    """File names inside a wheel built from the tracked files only (as from a fresh clone)."""
    src = tmp_path_factory.mktemp("src")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("eqt_monitor-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_holds_the_specs_the_registry_and_the_deploy_files(wheel_names):
    specs = {n for n in wheel_names if n.startswith("eqt_monitor/zoo/") and n.endswith(".yaml")}
    assert "eqt_monitor/zoo/registry.yaml" in specs
    assert len(specs - {"eqt_monitor/zoo/registry.yaml"}) == 15
    assert {"eqt_monitor/deploy/eqt-monitor.service", "eqt_monitor/deploy/grafana-dashboard.json",
            "eqt_monitor/deploy/alerts.yml", "eqt_monitor/live/templates/status.html",
            "eqt_monitor/service/templates/fdsnws-event.html",
            "eqt_monitor/service/templates/fdsnws-event.wadl.xml"} <= wheel_names
    assert "eqt_monitor/cli.py" in wheel_names and not any(n.startswith("tests/") for n in wheel_names)


def test_installed_package_finds_its_data():
    from eqt_monitor import deploy
    from eqt_monitor.model.registry import registry
    from eqt_monitor.model.spec import list_specs

    assert len(list_specs()) == 15 and set(registry()) == {"original", "conservative"}
    assert "\n[Unit]\n" in deploy.path("eqt-monitor.service").read_text()


def test_ci_runs_the_readmes_two_commands_in_order():
    commands = subprocess.run([sys.executable, str(ROOT / ".ci" / "readme_commands.py"), str(ROOT / "README.md")],
                              capture_output=True, text=True, check=True).stdout.split("\0")
    install, tests = commands
    assert install.startswith("python3 -m venv .venv") and "pip install" in install and "eqt-monitor replay" in install
    assert "--upgrade" not in install and "python -m pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    code = [line for line in ci.splitlines() if not line.lstrip().startswith("#")]
    assert "readme_commands.py" in ci and not any("pip " in line for line in code)  # nothing beside the README's
