"""Faults that must lose nothing (issue 12 items 1, 5, 6): ``eqt-monitor run`` against ``eqt-monitor
simulate`` on 127.0.0.1 with chile_2014 from ../shared; the catalog must end with replay's picks.

- the simulator restarted with another ``--start`` (its sequence numbers begin again at 0);
- the catalog's filesystem (a small tmpfs) filled up and freed again during the run, and
  ``replay`` on the full disk;
- a station removed by SIGHUP and added back.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import obspy
import pytest

from daemon_harness import (ROOT, daemon, free_port, scrape, settled, simulate, station_entries, total, wait_for,
                            write_config)
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import load_config
from eqt_monitor.pipeline.engine import CONTEXT_S
from test_daemon import _scrape_or_none, model, replay_settled_picks, settle_and_stop  # noqa: F401
from test_replay import assert_same_picks

pytestmark = pytest.mark.slow

T = lambda s: obspy.UTCDateTime(s).timestamp  # noqa: E731
SPEED = 60
START = "2014-05-01T00:00:00"


def chile_config(folder: Path, weights: Path, codes: list[str] | None = None) -> Path:
    """The repository's chile stations (CX.PB01, CX.PB02, or ``codes`` of them) in ``folder``."""
    return write_config(folder, station_entries(load_config(ROOT / "stations.yaml"), codes), weights)


def assert_live_equals_replay(model, db: Path | str, config_path: Path, source: str, end: str, final: dict) -> None:
    """The catalog's picks are replay's up to each station's settled time (from CONTEXT_S on: the
    archive goes on before ``START``, and replay's first windows see that data, the stream's do not)."""
    from_ = T(START) + CONTEXT_S
    config = load_config(config_path)
    expected = [p for p in replay_settled_picks(model, config, T(START), T(end), source, final) if p.time >= from_]
    with Catalog(db) as catalog:
        live = [p for p in catalog.picks() if p.time >= from_]
    assert len(expected) >= 20, "the span has picks"
    assert_same_picks(live, expected)


@dataclass
class LiveRun:
    """A daemon on a simulator of chile: the two processes, the simulator's port, config and catalog."""

    run: object
    server: object
    port: int
    config_path: Path
    db: Path | str

    @contextmanager
    def stopped_on_failure(self) -> Iterator[LiveRun]:
        """Stop the daemon and the simulator (the one held by then) if the block fails."""
        try:
            yield self
        except BaseException:
            self.run.stop()
            self.server.stop()
            raise


def start_live(folder: Path, logs: Path, sds: Path, end: str, weights: Path, db: str | None = None) -> LiveRun:
    """The daemon (config, catalog and state in ``folder``, logs in ``logs``; or the catalog ``db``, a
    PostgreSQL URI) on a simulator of chile from START to ``end``."""
    config_path = chile_config(folder, weights)
    port, mport = free_port(), free_port()
    run = daemon(config_path, f"seedlink://127.0.0.1:{port}", mport, logs / "run.log", START,
                 *(["--db", db] if db else []))
    wait_for(lambda: _scrape_or_none(mport), 120, "the daemon's metrics endpoint")
    server = simulate(f"sds://{sds}", port, SPEED, logs / "simulate.log", START, end)
    return LiveRun(run, server, port, config_path, db or folder / "catalog.sqlite")


def released(server) -> Callable[[], bool]:
    return lambda: "all data up to" in server.text()


def progress_past(db: Path | str, seconds: float) -> None:
    wait_for(lambda: min(settled(db).values(), default=0) > T(START) + seconds, 120, f"progress past {seconds:.0f} s")


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_a_server_whose_sequence_numbers_reset_is_resumed_by_time_losing_nothing(original_weights, model,
                                                                                 tmp_path, sds):
    """chile 00:00-01:20 at 60x; at ~00:25 the simulator is killed and started again with
    --start 00:15, so its record numbers no longer match the daemon's resume point."""
    source, end = f"sds://{sds}", "2014-05-01T01:20:00"
    live = start_live(tmp_path, tmp_path, sds, end, original_weights)
    run, db, config_path = live.run, live.db, live.config_path
    with live.stopped_on_failure():
        progress_past(db, 1500)
        live.server.signal(signal.SIGKILL)
        live.server.wait(10)
        live.server = simulate(source, live.port, SPEED, tmp_path / "simulate2.log", "2014-05-01T00:15:00", end)
    final, values = settle_and_stop(run, live.server, db, released(live.server), 2, T(end) - 200)
    log = run.text()
    assert "the server's sequence numbers do not continue ours" in log
    assert values['eqt_monitor_errors_total{kind="seedlink_sequence_reset"}'] >= 1
    assert "no longer on the server" not in log and total(values, "eqt_monitor_data_lost_seconds_total") == 0
    assert_live_equals_replay(model, db, config_path, source, end, final)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs at ``tmp_path/disk`` (unmounted afterwards); skips where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with one file; returns it (delete it to free the space)."""
    path = disk / "filler"
    with open(path, "wb", buffering=0) as fh:
        for block in (1 << 20, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * block)
            except OSError:
                pass
    return path


def test_a_full_disk_holds_picks_in_memory_and_catches_up_losing_nothing(original_weights, model, tmp_path, sds,
                                                                         small_disk):
    """chile 00:00-00:40 at 60x with the catalog and state on a tmpfs that fills up at ~00:08 and is
    freed ~20 s later: the daemon stays up, /healthz says so, and the catalog ends as a clean run's.
    Then ``replay`` on the full disk fails with one line naming the catalog."""
    source, end = f"sds://{sds}", "2014-05-01T00:40:00"
    live = start_live(small_disk, tmp_path, sds, end, original_weights)
    run, server, config_path, db = live.run, live.server, live.config_path, live.db
    mport = run.metrics_port
    with live.stopped_on_failure():
        progress_past(db, 480)
        filler = fill(small_disk)
        code, text = wait_for(lambda: (lambda h: h if h[0] == 503 else None)(healthz(mport)), 60, "/healthz to say")
        assert f"{db} not writable" in text and "held in memory" in text
        held = wait_for(lambda: scrape(mport)[1].get("eqt_monitor_catalog_held_items", 0), 60, "picks to be held")
        values = scrape(mport)[1]
        assert values["eqt_monitor_catalog_writable"] == 0 and values["eqt_monitor_catalog_write_errors_total"] >= 1
        assert run.p.poll() is None, "the daemon stays up"
        filler.unlink()
        wait_for(lambda: healthz(mport)[0] == 200, 90, "/healthz to be ok once space is back")
    final, values = settle_and_stop(run, server, db, released(server), 2, T(end) - 200)
    log = run.text()
    assert values["eqt_monitor_catalog_writable"] == 1 and values["eqt_monitor_catalog_held_items"] == 0
    downs, ups = log.count(f"{db}: not writable"), log.count(f"{db}: writable again")
    assert 1 <= downs == ups and "Traceback" not in log  # one line per change of state
    assert_live_equals_replay(model, db, config_path, source, end, final)
    print(f"held at most ~{held:.0f} picks and detections; {downs} outage(s)")

    filler = fill(small_disk)
    replay_db = small_disk / "replay.sqlite"
    done = subprocess.run([sys.executable, "-m", "eqt_monitor.cli", "replay", "--config", str(config_path), "--source",
                           source, "--start", START, "--end", "2014-05-01T00:05:00", "--db", str(replay_db),
                           "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    filler.unlink()
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    lines = [line for line in output.splitlines() if str(replay_db) in line]
    assert len(lines) == 1 and "full" in lines[0], output


def test_a_postgresql_server_that_goes_down_holds_picks_in_memory_and_catches_up_losing_nothing(
        original_weights, model, tmp_path, sds, own_pg_server):
    """chile 00:00-00:30 at 60x into a PostgreSQL catalog whose server is stopped at ~00:08 and started
    again once /healthz says so: the daemon stays up, retries, and the catalog ends as a clean run's."""
    from eqt_monitor.catalog.backend import redacted

    source, end, uri = f"sds://{sds}", "2014-05-01T00:30:00", own_pg_server.new_database()
    live = start_live(tmp_path, tmp_path, sds, end, original_weights, db=uri)
    mport = live.run.metrics_port
    with live.stopped_on_failure():
        progress_past(uri, 480)
        own_pg_server.stop()
        code, text = wait_for(lambda: (lambda h: h if h[0] == 503 else None)(healthz(mport)), 60, "/healthz to say")
        assert f"{redacted(uri)} not writable" in text
        assert live.run.p.poll() is None, "the daemon stays up"
        own_pg_server.start()
        wait_for(lambda: healthz(mport)[0] == 200, 90, "/healthz to be ok once the server is back")
    final, values = settle_and_stop(live.run, live.server, uri, released(live.server), 2, T(end) - 200)
    log = live.run.text()
    assert values["eqt_monitor_catalog_writable"] == 1 and values["eqt_monitor_catalog_held_items"] == 0
    downs, ups = log.count(f"{uri}: not writable"), log.count(f"{uri}: writable again")
    assert 1 <= downs == ups and "Traceback" not in log, log[-3000:]
    assert_live_equals_replay(model, uri, live.config_path, source, end, final)


def test_a_station_removed_and_added_back_by_sighup_resumes_from_its_settled_time(original_weights, model,
                                                                                  tmp_path, sds):
    """chile 00:00-00:40 at 60x: CX.PB02 is dropped by SIGHUP at ~00:10 and added back ~5 min of
    data later; its picks (and PB01's) are replay's: no near-duplicates around the re-add."""
    source, end = f"sds://{sds}", "2014-05-01T00:40:00"
    live = start_live(tmp_path, tmp_path, sds, end, original_weights)
    run, server, config_path, db = live.run, live.server, live.config_path, live.db
    both = config_path.read_text()
    with live.stopped_on_failure():
        progress_past(db, 600)
        chile_config(tmp_path, original_weights, ["PB01"])
        run.signal(signal.SIGHUP)
        wait_for(lambda: "reload: 0 station(s) added, 1 removed, 1 kept" in run.text(), 30, "the removal")
        removed = settled(db)["CX.PB01."]
        wait_for(lambda: settled(db)["CX.PB01."] > removed + 300, 60, "5 min of PB01 data without PB02")
        config_path.write_text(both)
        run.signal(signal.SIGHUP)
        wait_for(lambda: "reload: 1 station(s) added, 0 removed, 1 kept" in run.text(), 30, "the re-add")
    final, _ = settle_and_stop(run, server, db, released(server), 2, T(end) - 200)
    assert_live_equals_replay(model, db, config_path, source, end, final)
