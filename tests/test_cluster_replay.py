"""``replay --cluster`` on real Dask: a LocalCluster and a real ``dask scheduler`` with two ``dask
worker`` processes on 127.0.0.1, over the real archives in ../shared, against the serial replay."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import obspy
import pytest

from eqt_monitor.config import load_config
from eqt_monitor.errors import ConfigError
from test_replay import assert_same_picks, ridgecrest_config, run

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
T = lambda s: obspy.UTCDateTime(s).timestamp  # noqa: E731
CHILE = ("2014-05-01T00:00", "2014-05-01T02:00")  # 2 stations x 8 chunks of 15 min = 16 one-station tasks
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def model(original_weights):
    from eqt_monitor.model.load import load_model

    return load_model("original", original_weights)


@contextlib.contextmanager
def dask_processes(logs: Path, workers: int = 2, **settings: str):
    """A ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes on 127.0.0.1
    (stopped after); ``settings``: ``DASK_DISTRIBUTED__SCHEDULER__*`` environment values."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {**ENV, **{f"DASK_DISTRIBUTED__SCHEDULER__{k.upper()}": v for k, v in settings.items()}}
    cwd = dict(cwd=logs, env=env, stdout=subprocess.DEVNULL, stderr=open(logs / "dask.log", "w"))
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], **cwd)]
    procs += [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                                "--name", f"w{i}"], **cwd) for i in range(workers)]
    try:
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for proc in procs[::-1]:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A ``dask scheduler`` and two ``dask worker`` processes for the module."""
    with dask_processes(tmp_path_factory.mktemp("dask")) as address:
        yield address


def cli(*args: str, db: Path, wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "eqt_monitor.cli", "replay", *args, "--db", str(db), "--no-progress"]
    if not wait:
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=400)


def chile(*args: str, db: Path, span=CHILE, config: Path = ROOT / "stations.yaml", **kw):
    return cli("--config", str(config), "--start", span[0], "--end", span[1], "--chunk", "900", "--no-events",
               *args, db=db, **kw)


def rows(db: Path, table: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def catalog_picks(db: Path):
    from eqt_monitor.catalog.store import Catalog

    with Catalog(db) as catalog:
        return catalog.picks(), catalog.detections()


def assert_same_detections(got, expected):
    key = lambda d: (d.station, round(d.start, 2), round(d.end, 2))  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, expected))


def test_cluster_spec_in_config_is_validated(tmp_path):
    text = (ROOT / "stations.yaml").read_text().replace("agency: GFZ", "agency: GFZ\ncluster: {}")
    for spec, ok in (("local", True), ("local:3", True), ("tcp://10.0.0.5:8786", True), ("local:0", False),
                     ("lokal", False), ("tcp://nohost", False)):
        (tmp_path / "s.yaml").write_text(text.format(spec))
        if ok:
            assert load_config(tmp_path / "s.yaml").cluster == spec
        else:
            with pytest.raises(ConfigError, match=r"s\.yaml:\d+: cluster: expected"):
                load_config(tmp_path / "s.yaml")


def test_dashboard_address_is_printed_and_answers():
    pytest.importorskip("bokeh")
    from eqt_monitor.cluster.client import connect, dashboard_line

    with connect("local:1") as client:
        line = dashboard_line(client)
        assert line.startswith("Dask dashboard: http://127.0.0.1:")
        with urllib.request.urlopen(line.split(": ", 1)[1], timeout=30) as page:
            assert page.status == 200 and b"Dask" in page.read()


def test_without_bokeh_the_dashboard_line_says_so():
    code = ("import sys; sys.modules['bokeh'] = None\n"  # bokeh not importable in this process
            "from eqt_monitor.cluster.client import connect, dashboard_line\n"
            "with connect('local:1') as client: print(dashboard_line(client))")
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Dask dashboard: none (the scheduler needs bokeh for one: pip install 'eqt-monitor[cluster]')"
    assert "8787" not in done.stderr  # no HTTP server was started for it


@pytest.mark.slow
def test_local_cluster_replay_prints_no_tensorflow_start_up_lines(tmp_path):
    """Each worker process imports TensorFlow: none of its start-up chatter reaches the terminal.
    Without --chunk a task is a day: one span, so one station a task keeps both workers busy."""
    from eqt_monitor.model.backend import is_noise

    env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    cmd = [sys.executable, "-m", "eqt_monitor.cli", "replay", "--config", str(ROOT / "stations.yaml"), "--start",
           CHILE[0], "--end", "2014-05-01T00:30", "--no-events", "--db", str(tmp_path / "c.sqlite"),
           "--no-progress", "--cluster", "local:2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 tasks (0 station-chunks done before)" in done.stdout
    assert "Dask dashboard:" in done.stderr
    assert [line for line in done.stderr.splitlines() if line.strip() and is_noise(line)] == []
    assert not any(word in done.stderr for word in ("oneDNN", "cuda", "absl", "rebuild TensorFlow"))


@pytest.mark.slow
def test_ridgecrest_serial_equals_local_cluster_equals_scheduler(shared, model, scheduler, tmp_path):
    config = ridgecrest_config(shared)
    start, end = "2019-07-07T07:50", "2019-07-07T09:10"  # all 80 min
    _, picks, detections = run(model, config, T(start), T(end))
    (tmp_path / "rc.yaml").write_text(
        f"source: file://{shared}/data/ridgecrest_2019/*.mseed\nstations:\n"
        + "".join(f"  - {{network: PB, station: {s}, channels: 'EH?'}}\n" for s in ("B916", "B917", "B918", "B921")))
    args = ("--config", str(tmp_path / "rc.yaml"), "--start", start, "--end", end, "--chunk", "600", "--no-events")
    results = {}
    for spec in ("local:2", scheduler):
        db = tmp_path / f"{spec.replace('/', '_').replace(':', '_')}.sqlite"
        done = cli(*args, "--cluster", spec, db=db)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "8 tasks (0 station-chunks done before)" in done.stdout  # 8 spans ≥ 2 workers: all 4 stations a task
        got_picks, got_dets = catalog_picks(db)
        assert len(got_picks) > 20
        assert_same_picks(got_picks, picks)
        assert_same_detections(got_dets, detections)
        results[spec] = (rows(db, "picks"), rows(db, "detections"))
    assert results["local:2"] == results[scheduler]  # same tasks, same batches: the very same rows


def kill_worker_running(client, key_part: str, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """SIGKILL the worker process that runs a task whose key contains ``key_part``, once one does
    (while ``proc`` runs); whether one was killed."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        busy = [w for w, tasks in client.processing().items() if any(key_part in str(t) for t in tasks)]
        if busy:
            with contextlib.suppress(Exception):  # the worker may be gone already
                os.kill(client.run(os.getpid, workers=busy[:1])[busy[0]], signal.SIGKILL)
                return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def chile_clean(shared, model, scheduler, tmp_path_factory):
    """Chile, 16 one-station tasks on the scheduler with one worker SIGKILLed while it runs a task; the
    serial picks."""
    config = load_config(ROOT / "stations.yaml")
    _, picks, detections = run(model, config, T(CHILE[0]), T(CHILE[1]))
    db = tmp_path_factory.mktemp("chile") / "clean.sqlite"
    proc = chile("--cluster", scheduler, "--group", "1", db=db, wait=False)
    with distributed.Client(scheduler) as client:
        assert kill_worker_running(client, "eqt-chunk-", proc), "no task ran"
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        client.wait_for_workers(2, timeout=90)  # the nanny restarts the killed worker
    return db, picks, detections


@pytest.mark.slow
def test_chile_sixteen_tasks_with_a_worker_killed_equal_serial(chile_clean):
    db, picks, detections = chile_clean
    got_picks, got_dets = catalog_picks(db)
    assert len(got_picks) > 50
    assert_same_picks(got_picks, picks)
    assert_same_detections(got_dets, detections)


@pytest.mark.slow
def test_client_killed_half_way_then_rerun_equals_one_clean_run(chile_clean, scheduler, tmp_path):
    """Killed while it runs one-station tasks; re-run the same command: row for row the clean run.
    Re-run instead with the default groups (both stations a task): the pieces the one-station run
    finished are skipped, the rows are the same rows in the same order, and their probabilities
    differ only by the float rounding of other batches (< 1e-5)."""
    db = tmp_path / "resumed.sqlite"
    proc = chile("--cluster", scheduler, "--group", "1", db=db, wait=False)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as con:
                    if con.execute("SELECT count(*) FROM state WHERE key LIKE 'replay-chunk/%'").fetchone()[0] >= 3:
                        break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    regrouped = tmp_path / "regrouped.sqlite"
    with sqlite3.connect(db) as src, sqlite3.connect(regrouped) as dst:  # the WAL too: a copy of the file misses it
        src.backup(dst)
    for target, group in ((db, ("--group", "1")), (regrouped, ())):
        again = chile("--cluster", scheduler, *group, db=target)
        assert again.returncode == 0, again.stderr[-2000:]
        skipped = int(again.stdout.split("tasks (")[1].split(" station-chunks done before")[0])
        assert 3 <= skipped < 16  # of 2 stations x 8 chunks
    for table in ("picks", "detections"):
        clean = rows(chile_clean[0], table)
        assert rows(db, table) == clean
        assert_rows_close(rows(regrouped, table), clean)


def assert_rows_close(got: list[tuple], expected: list[tuple], tol: float = 1e-5) -> None:
    """The same rows in the same order; floats equal to ``tol``."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert abs(x - y) <= tol if isinstance(x, float) and isinstance(y, float) else x == y, (a, b)


def chile_copy(shared, tmp_path: Path, edit) -> Path:
    """A stations.yaml over a copy of chile_2014's 2014-05-01 day files, each passed through
    ``edit(name, raw) -> bytes | None`` (``None``: the file is left out)."""
    sds = tmp_path / "sds"
    for src in (shared / "data/chile_2014/sds").rglob("*.D.2014.121"):
        raw = edit(src.name, src.read_bytes())
        if raw is not None:
            dst = sds / src.relative_to(shared / "data/chile_2014/sds")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(raw)
    config = tmp_path / "stations.yaml"
    config.write_text((ROOT / "stations.yaml").read_text().replace("sds://../shared/data/chile_2014/sds", f"sds://{sds}"))
    return config


@pytest.mark.slow
def test_corrupt_file_fails_its_chunks_only(chile_clean, shared, scheduler, tmp_path):
    def corrupt(name: str, raw: bytes) -> bytes:
        if "PB01..HHZ" not in name:
            return raw
        at = len(raw) // 72 + 100  # garbage bytes in the middle of a record, 10 minutes in
        return raw[:at] + bytes(range(256)) * 8 + raw[at + 2048:]

    config = chile_copy(shared, tmp_path, corrupt)
    span = (CHILE[0], "2014-05-01T00:30")
    done = chile("--cluster", scheduler, "--group", "1", db=tmp_path / "bad.sqlite", span=span, config=config)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "replay: 2 of 4 chunk(s) failed:" in done.stderr
    assert "CX.PB01. 2014-05-01T00:00:00.000000Z..2014-05-01T00:15:00.000000Z: bad data" in done.stderr
    assert "CX.PB02." not in done.stderr and "run the same command again" in done.stderr
    got = [p for p in catalog_picks(tmp_path / "bad.sqlite")[0] if p.station.station == "PB02"]
    clean = [p for p in catalog_picks(chile_clean[0])[0] if p.station.station == "PB02" and p.time < T(span[1])]
    assert len(clean) > 10
    assert_same_picks(got, clean)


@pytest.mark.slow
def test_a_station_without_a_horizontal_finishes_its_chunks_like_the_serial_replay(shared, scheduler, tmp_path):
    # PB01 has no HHN file: both replays zero-fill the missing component (a warning, not bad data),
    # so every chunk is done, the exit status is 0 and the picks are the serial replay's
    config = chile_copy(shared, tmp_path, lambda name, raw: None if "PB01..HHN" in name else raw)
    span = (CHILE[0], "2014-05-01T00:30")
    serial = chile(db=tmp_path / "serial.sqlite", span=span, config=config)
    assert serial.returncode == 0, serial.stderr[-2000:]
    done = chile("--cluster", scheduler, db=tmp_path / "cluster.sqlite", span=span, config=config)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "failed" not in done.stderr
    picks, dets = catalog_picks(tmp_path / "cluster.sqlite")
    expected_picks, expected_dets = catalog_picks(tmp_path / "serial.sqlite")
    assert any(p.station.station == "PB01" for p in expected_picks)
    assert_same_picks(picks, expected_picks)
    assert_same_detections(dets, expected_dets)


@pytest.mark.slow
def test_a_task_that_kills_every_worker_it_is_given_fails_its_chunk_only(tmp_path):
    """Dask retries a task whose worker dies ``allowed-failures`` times, then gives up (KilledWorker):
    that chunk is reported by station and span, the other chunks complete, the exit status says so."""
    with dask_processes(tmp_path, allowed_failures="1", worker_saturation="1.0") as address:  # one task per worker
        span = (CHILE[0], "2014-05-01T00:30")  # 4 tasks; eqt-chunk-0 is CX.PB01 00:00-00:15
        proc = chile("--cluster", address, "--group", "1", db=tmp_path / "c.sqlite", span=span, wait=False)
        with distributed.Client(address) as client:
            for attempt in range(2):  # the first try and Dask's one retry
                assert kill_worker_running(client, "eqt-chunk-0-", proc), f"attempt {attempt} never ran"
                time.sleep(1.0)  # the scheduler notices the death before the retry can be seen
            out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-2000:]
    assert "replay: 1 of 4 chunk(s) failed:" in err
    assert "CX.PB01. 2014-05-01T00:00:00.000000Z..2014-05-01T00:15:00.000000Z: the task killed 2 workers" in err
    assert "run the same command again: finished chunks are skipped" in err
    with sqlite3.connect(tmp_path / "c.sqlite") as con:
        assert con.execute("SELECT count(*) FROM state WHERE key LIKE 'replay-chunk/%'").fetchone()[0] == 3
    picks = catalog_picks(tmp_path / "c.sqlite")[0]
    assert {p.station.station for p in picks} == {"PB01", "PB02"}
    assert not [p for p in picks if p.station.station == "PB01" and p.time < T("2014-05-01T00:15")]


def salton(shared):
    from eqt_monitor.config import config_from_inventory

    return config_from_inventory(shared / "data/salton_sea_2020/stations.xml", [f"file://{shared}/data/salton_sea_2020/mseed"])


def event_rows(catalog) -> list[tuple]:
    return sorted((round(e.origin.time, 2), round(e.origin.latitude, 4), round(e.origin.longitude, 4),
                   sorted(a.pick.id for a in e.arrivals)) for e in catalog.events())


@pytest.mark.slow
def test_salton_sea_events_equal_serial_and_blocks_commit_once(shared, model, scheduler, tmp_path):
    from eqt_monitor.catalog.store import Catalog
    from eqt_monitor.cluster.client import replay_on_cluster
    from eqt_monitor.cluster.tasks import ModelRef
    from eqt_monitor.replay import replay_into_catalog

    config, start, end = salton(shared), T("2020-10-01T00:00"), T("2020-10-01T00:03")
    ref = ModelRef("original", str(model.weights_path), model.weights_sha256)
    with Catalog(tmp_path / "serial.sqlite") as serial:
        replay_into_catalog(config, serial, start=start, end=end, predict_fn=model.predict, model_name="original",
                            weights_sha256=model.weights_sha256, progress=False)
        expected = event_rows(serial)
    assert len(expected) >= 2
    with Catalog(tmp_path / "cluster.sqlite") as catalog:
        summary = replay_on_cluster(config, catalog, start=start, end=end, model=ref, cluster=scheduler,
                                    chunk_s=90.0, progress=False)
        assert summary.chunks == 2 and not summary.failed  # 2 spans ≥ 2 workers: the 16 stations a task
        assert event_rows(catalog) == expected
    with Catalog(tmp_path / "blocks.sqlite") as catalog:  # association in 60 s blocks as the chunks complete
        summary = replay_on_cluster(config, catalog, start=start, end=end, model=ref, cluster=scheduler,
                                    chunk_s=60.0, progress=False, association_block_s=60.0)
        blocks = event_rows(catalog)
        assert summary.events == len(blocks) >= len(expected) - 1
        again = replay_on_cluster(config, catalog, start=start, end=end, model=ref, cluster=scheduler,
                                  chunk_s=60.0, progress=False, association_block_s=60.0)
        assert (again.chunks, again.skipped) == (0, 48) and again.events == 0 and event_rows(catalog) == blocks


@pytest.mark.slow
def test_mc_dropout_on_the_cluster_equals_the_serial_mc_replay(shared, original_weights, scheduler, tmp_path):
    """``model.mc_dropout: 5`` (seed 3) on chile 00:30-00:45 (the quake at 00:38), 300 s chunks on the
    scheduler's two workers (3 tasks of both stations): the same picks as the serial Monte-Carlo replay, with the same spreads."""
    import dataclasses

    from eqt_monitor.catalog.store import Catalog
    from eqt_monitor.cluster.client import replay_on_cluster
    from eqt_monitor.cluster.tasks import ModelRef
    from eqt_monitor.model.load import load_predictor
    from eqt_monitor.replay import replay

    base = load_config(ROOT / "stations.yaml")
    config = dataclasses.replace(base, model=dataclasses.replace(base.model, mc_dropout=5, mc_seed=3))
    start, end = T("2014-05-01T00:30"), T("2014-05-01T00:45")
    loaded, predict = load_predictor("original", original_weights, mc_dropout=5, seed=3)
    _, serial, _ = replay(config, start=start, end=end, predict_fn=predict, model_name="original",
                          weights_sha256=loaded.weights_sha256, progress=False)
    assert len(serial) > 10 and all(p.probability_std is not None and p.time_uncertainty for p in serial)
    ref = ModelRef("original", str(original_weights), loaded.weights_sha256, mc_dropout=5, mc_seed=3)
    with Catalog(tmp_path / "mc.sqlite") as catalog:
        summary = replay_on_cluster(config, catalog, start=start, end=end, model=ref, cluster=scheduler,
                                    chunk_s=300.0, progress=False, locate=False)
        assert summary.chunks == 3 and not summary.failed  # both stations a task
        got = catalog.picks()
    assert_same_picks(got, serial)
    key = lambda p: (p.station, p.phase, p.time)  # noqa: E731
    for a, b in zip(sorted(got, key=key), sorted(serial, key=key)):
        assert a.time_uncertainty == b.time_uncertainty and abs(a.probability_std - b.probability_std) <= 1e-5


@pytest.mark.slow
def test_block_association_across_swarm_boundaries_matches_one_association(shared, model, tmp_path):
    """Salton Sea's 3 min of swarm associated in blocks of 45, 60 and 90 s (boundaries, and so
    commit horizons, fall between and beside its events) against one association of the whole span.

    Not row-for-row: PyOcto's answer depends on the picks around an event, so with 60 s blocks one
    event of five (origin 142.3 s in, 12 picks) comes out 1.3 s earlier with 13 picks. What the
    blocks guarantee, and what is asserted: the same events, each committed once, no pick in two.
    """
    import shutil

    from eqt_monitor.catalog.store import Catalog
    from eqt_monitor.cluster.blocks import SpanAssociation
    from eqt_monitor.replay import replay_into_catalog

    config, start, end = salton(shared), T("2020-10-01T00:00"), T("2020-10-01T00:03")
    with Catalog(tmp_path / "picks.sqlite") as catalog:
        replay_into_catalog(config, catalog, start=start, end=end, predict_fn=model.predict, model_name="original",
                            weights_sha256=model.weights_sha256, progress=False, locate=False)
    shutil.copy(tmp_path / "picks.sqlite", tmp_path / "whole.sqlite")
    with Catalog(tmp_path / "whole.sqlite") as catalog:
        SpanAssociation(catalog, config, start, end, None, "whole", block_s=end - start).finish()
        whole = catalog.events()
    assert len(whole) >= 4
    for block in (45.0, 60.0, 90.0):
        shutil.copy(tmp_path / "picks.sqlite", tmp_path / f"{block}.sqlite")
        with Catalog(tmp_path / f"{block}.sqlite") as catalog:
            association = SpanAssociation(catalog, config, start, end, None, "blocks", block_s=block)
            assert association.live is not None  # the span is longer than a block: associated in blocks
            for until in np.arange(start + block, end, block):
                association.complete(float(until))
            assert association.finish() == len(catalog.events()) == len(whole), block
            blocks = catalog.events()
        pick_ids = [a.pick.id for e in blocks for a in e.arrivals]
        assert len(pick_ids) == len(set(pick_ids)), block
        for got, expected in zip(sorted(blocks, key=lambda e: e.origin.time), sorted(whole, key=lambda e: e.origin.time)):
            assert abs(got.origin.time - expected.origin.time) < 2.0, block
            assert abs(got.origin.latitude - expected.origin.latitude) < 0.05, block
            assert abs(got.origin.longitude - expected.origin.longitude) < 0.05, block
            shared_picks = {a.pick.id for a in got.arrivals} & {a.pick.id for a in expected.arrivals}
            assert len(shared_picks) >= 0.6 * len(expected.arrivals), block
