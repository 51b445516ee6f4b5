"""Test harness for ``eqt-monitor run``: configs, a SeedLink simulator and the daemon as real
subprocesses (so SIGTERM/SIGKILL are real), and readers of the catalog it writes."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from fdsn_server import free_port  # noqa: F401 (re-exported for the daemon tests)

ROOT = Path(__file__).resolve().parents[1]


def write_config(folder: Path, stations: str, weights: Path, extra: str = "") -> Path:
    """A stations.yaml in ``folder`` with the given ``stations:`` entries (YAML list items)."""
    path = folder / "stations.yaml"
    path.write_text(f"stations:\n{stations}\ncatalog: catalog.sqlite\nstate_dir: state\n"
                    f"model:\n  weights: {weights}\n{extra}")
    return path


def station_entries(config, codes: list[str] | None = None) -> str:
    """``stations:`` entries (YAML list items) of a loaded config's stations (only ``codes`` if given)."""
    return "".join(f'  - {{network: {s.key.network}, station: {s.key.station}, channels: "HH?", '
                   f'latitude: {s.latitude}, longitude: {s.longitude}, elevation: {s.elevation}}}\n'
                   for s in config.stations if codes is None or s.key.station in codes)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.25):
    """Poll ``predicate`` until truthy; fail the test naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Proc:
    """A CLI subprocess with its log file."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None) -> None:
        self.log = log
        self._fh = open(log, "ab")
        full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self.p = subprocess.Popen([sys.executable, "-m", "eqt_monitor.cli", *args], stdout=self._fh,
                                  stderr=subprocess.STDOUT, cwd=ROOT, env=full_env)

    def signal(self, sig: int) -> None:
        self.p.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.p.wait(timeout)
        finally:
            self._fh.close()

    def stop(self) -> None:
        """End it if still running (test clean-up)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)
        self._fh.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def simulate(source: str, port: int, speed: float, log: Path, start: str | None = None,
             end: str | None = None) -> Proc:
    args = ["simulate", "--source", source, "--port", str(port), "--speed", str(speed)]
    args += ["--start", start] if start else []
    args += ["--end", end] if end else []
    proc = Proc(args, log)
    wait_for(lambda: _listening(port), 30, f"the simulator on port {port}")
    return proc


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def daemon(config: Path, source: str, metrics_port: int, log: Path, begin: str, *extra: str,
           env: dict | None = None) -> Proc:
    proc = Proc(["run", "--config", str(config), "--source", source, "--metrics-addr", f"127.0.0.1:{metrics_port}",
                 "--begin", begin, *extra], log, env)
    proc.metrics_port = metrics_port
    return proc


def settled(db: Path | str) -> dict[str, float]:
    """The daemon's committed progress per station (empty before its first commit, or while a
    PostgreSQL catalog's server is down); on a PostgreSQL catalog, that of every daemon (shard)."""
    if isinstance(db, str):  # a postgresql:// catalog
        from eqt_monitor.catalog.store import Catalog, CatalogWriteError

        try:
            with Catalog(db) as catalog:
                shards = catalog.states("daemon.settled").values()
        except CatalogWriteError:
            return {}
        return {station: t for value in shards for station, t in json.loads(value).items()}
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=10) as con:
            row = con.execute("SELECT value FROM state WHERE key = 'daemon.settled'").fetchone()
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}
    return json.loads(row[0]) if row else {}


def scrape(port: int) -> tuple[set[str], dict[str, float]]:
    """``/metrics`` over HTTP: the metric names declared (``# TYPE`` lines) and ``{series: value}``
    (series = name plus labels, as exposed)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    names, values = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return names, values


def total(series: dict[str, float], name: str) -> float:
    """Sum of every series of metric ``name`` (over its labels)."""
    return sum(v for k, v in series.items() if k == name or k.startswith(name + "{"))
