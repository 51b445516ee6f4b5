"""Many writers, one associator (issue 16): two ``eqt-monitor run`` daemons, each with half of the
Salton Sea stations, write one PostgreSQL catalog from one SeedLink simulator; the one holding the
association lock associates the picks of both. SIGKILL it: the other takes the lock over, the
killed one is restarted (as systemd would) and catches up. The catalog must end with replay's
picks and the events of one clean association over them, and equal those of one daemon with all
stations, run at the same time into a catalog of its own: none lost, none twice."""
from __future__ import annotations

import math
import signal
from pathlib import Path

import pytest

from daemon_harness import daemon, free_port, settled, simulate, wait_for, write_config
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import config_from_inventory
from test_daemon import (SALTON_T0, T, _scrape_or_none, assert_events_of_one_clean_association,  # noqa: F401
                         model, replay_settled_picks, wait_settled_stable)
from test_replay import assert_same_picks

pytestmark = pytest.mark.slow

SPEED = 4  # the 300 s of data stream for 75 s: time to kill the associating daemon mid-run
TAKES_LOCK = "holds the association lock"


def shard_config(folder: Path, stations, weights: Path) -> Path:
    folder.mkdir()
    entries = "".join(f'  - {{network: {s.key.network}, station: {s.key.station}, location: "{s.key.location}", '
                      f'channels: "{s.key.channel_prefix}?", latitude: {s.latitude}, longitude: {s.longitude}, '
                      f'elevation: {s.elevation}}}\n' for s in stations)
    return write_config(folder, entries, weights)


def _event_keys(events, before: float) -> list:
    return sorted((round(e.origin.time, 3), sorted((a.pick.station.id, a.pick.phase) for a in e.arrivals))
                  for e in events if e.origin.time < before)


def test_two_shards_on_one_postgresql_catalog_equal_one_daemon_and_survive_sigkill_of_the_associator(
        shared, original_weights, model, pg_server, tmp_path):
    inventory = shared / "data/salton_sea_2020/stations.xml"
    archive = f"file://{shared}/data/salton_sea_2020/mseed"
    whole = config_from_inventory(inventory, [archive])
    stations = sorted(whole.stations, key=lambda s: s.key.id)
    uri, uri_one = pg_server.new_database(), pg_server.new_database()  # the shards' catalog; the one daemon's
    configs = {name: shard_config(tmp_path / name, stations[i::2], original_weights) for i, name in enumerate("ab")}
    configs["one"] = shard_config(tmp_path / "one", stations, original_weights)
    port = free_port()

    def start(name: str):
        shard = [] if name == "one" else ["--shard", name, "--shard-stale-after", "300"]  # 300: a busy CI machine
        return daemon(configs[name], f"seedlink://127.0.0.1:{port}", free_port(), tmp_path / f"{name}.log",
                      SALTON_T0, "--db", uri_one if name == "one" else uri, *shard)

    def started(run) -> None:
        wait_for(lambda: _scrape_or_none(run.metrics_port), 180, f"the metrics endpoint of {run.log.name}")

    runs = {name: start(name) for name in ("a", "b", "one")}
    for run in runs.values():  # all load the model at once
        started(run)
    server = simulate(archive, port, SPEED, tmp_path / "simulate.log")
    try:
        def events() -> int:
            with Catalog(uri) as catalog:
                return len(catalog.events())

        wait_for(events, 300, "the first event")
        leader = wait_for(lambda: next((n for n in "ab" if TAKES_LOCK in runs[n].text()), None), 10, "a leader")
        other = "b" if leader == "a" else "a"
        assert TAKES_LOCK not in runs[other].text(), "exactly one associates"
        runs[leader].signal(signal.SIGKILL)
        runs[leader].wait(10)
        wait_for(lambda: TAKES_LOCK in runs[other].text(), 60, f"daemon {other} to take the association over")
        restarted_at = len(runs[leader].text())
        runs[leader] = start(leader)  # restarted: it resumes its shard from its progress in the catalog
        started(runs[leader])
        wait_for(lambda: "all data up to" in server.text(), 180, "the simulator to release all data")
        for db in (uri, uri_one):
            wait_settled_stable(db, len(stations), T(SALTON_T0) + 90, 6, 300)
        assert TAKES_LOCK not in runs[leader].text()[restarted_at:]  # the restarted daemon found the lock taken
        for run in runs.values():
            run.signal(signal.SIGTERM)
        for run in runs.values():
            assert run.wait(30) == 0
        final, final_one = settled(uri), settled(uri_one)
    finally:
        for run in runs.values():
            run.stop()
        server.stop()
    for name, run in runs.items():
        assert "Traceback" not in run.text(), run.text()[-3000:]

    every = replay_settled_picks(model, whole, T(SALTON_T0), T(SALTON_T0) + 300, archive,
                                 {s.key.id: math.inf for s in stations})
    catalogs = {}
    for db, until in ((uri, final), (uri_one, final_one)):
        with Catalog(db) as catalog:
            live, stored = catalog.picks(), catalog.events()
            horizon = float(catalog.get_state("associator.horizon"))
        expected = [p for p in every if p.time < until[p.station.id]]
        assert len({p.station for p in live}) >= 10 and len(live) >= 50
        assert_same_picks(live, expected)
        arrivals = [a.pick_id for e in stored for a in e.arrivals]
        assert len(arrivals) == len(set(arrivals)) and len({e.id for e in stored}) == len(stored) >= 2
        assert_events_of_one_clean_association(stored, whole, expected, until)
        catalogs[db] = live, stored, horizon
    (shard_picks, shard_events, shard_horizon), (one_picks, one_events, one_horizon) = catalogs[uri], catalogs[uri_one]
    both = {k: min(final[k], final_one[k]) for k in final}  # the span both runs had settled
    assert_same_picks([p for p in shard_picks if p.time < both[p.station.id]],
                      [p for p in one_picks if p.time < both[p.station.id]])
    common = min(shard_horizon, one_horizon)  # events both runs committed
    assert _event_keys(shard_events, common) == _event_keys(one_events, common) != []
    assert {a.pick.station for e in shard_events for a in e.arrivals} & {s.key for s in stations[0::2]}
    assert {a.pick.station for e in shard_events for a in e.arrivals} & {s.key for s in stations[1::2]}
