"""Early picks (``picks: early``): preliminary picks from single windows within seconds of an
arrival, each later replaced by its final pick or retracted; final picks unchanged. Real model,
real data: the Salton Sea swarm, 16 stations, fed second by second as records arrive live."""
from __future__ import annotations

from collections import Counter

import numpy as np
import obspy
import pytest
from segments import iter_segments

from eqt_monitor.pipeline.early import EARLY_MARGIN, MATCH
from eqt_monitor.pipeline.engine import Engine, EngineConfig

STEP = 1000  # a 10 s window step


@pytest.fixture(scope="module")
def salton_seconds(shared):
    """Salton Sea 00:00-00:03 as 1 s segments of all stations, in arrival (time) order."""
    stream = obspy.Stream()
    for path in sorted((shared / "data" / "salton_sea_2020" / "mseed").iterdir()):
        stream += obspy.read(str(path))
    by_station = iter_segments(stream, slice_s=1.0)
    return sorted((s for segs in by_station.values() for s in segs), key=lambda s: (round(s.start), s.station))


@pytest.fixture(scope="module")
def predict(original_weights):
    from eqt_monitor.model.load import load_model

    return load_model("original", original_weights).predict


def live_run(predict, segments, early: bool):
    """Feed each second of every station, predict what is ready (as the daemon does when it keeps
    up), and note how much data each station had when each preliminary pick appeared."""
    engine = Engine(predict, EngineConfig(step=STEP, batch_size=64, early_picks=early))
    received: dict = {}
    finals, early_picks, outcomes = [], [], []
    for i, segment in enumerate(segments):
        engine.feed(segment)
        received[segment.station] = segment.end
        last_of_second = i + 1 == len(segments) or round(segments[i + 1].start) != round(segment.start)
        if last_of_second:
            out = engine.process(flush=True)
            finals += out.picks
            early_picks += [(p, received[p.station]) for p in out.early_picks]
            outcomes += out.early_outcomes
    return finals, early_picks, outcomes


def test_early_picks_come_within_seconds_and_resolve_to_the_final_picks(salton_seconds, predict):
    plain, none, _ = live_run(predict, salton_seconds, early=False)
    finals, early, outcomes = live_run(predict, salton_seconds, early=True)
    assert not none
    assert finals == plain, "final picks do not depend on early picks"
    assert len(early) >= 30, "the swarm gives preliminary picks"
    seen = dict(early)  # preliminary pick -> how far its station's data reached when it appeared
    lag_all = np.array([got - p.time for p, got in early])
    assert lag_all.min() >= EARLY_MARGIN / 100 - 0.01  # a window only counts picks 5 s inside it

    # every preliminary pick is resolved exactly once; a replacement is a final pick of its phase within 1 s
    assert Counter(o.early for o in outcomes) == Counter(p for p, _ in early)
    replaced = {o.final: o.early for o in outcomes if o.final is not None}
    assert len(replaced) == sum(o.final is not None for o in outcomes), "a final pick replaces one preliminary pick"
    for final, prelim in replaced.items():
        assert final in finals and (final.station, final.phase) == (prelim.station, prelim.phase)
        assert abs(final.time - prelim.time) <= MATCH / 100 + 1e-6
    assert len(replaced) >= 0.5 * len(outcomes), f"{len(replaced)} of {len(outcomes)} replaced"

    # each real arrival (a final pick) had its preliminary pick this long after it, in data time;
    # arrivals in a stream's first minute wait for its first window (60 s of data) whatever the rule
    begin = min(s.start for s in salton_seconds)
    arrivals = [f for f in finals if f.time >= begin + 60]
    lag = np.array([seen[replaced[f]] - f.time if f in replaced else np.inf for f in arrivals])
    assert len(arrivals) >= 50 and np.isfinite(lag).all(), "every arrival had a preliminary pick"
    assert np.median(lag) <= 12.0 and np.mean(lag <= 15.0) >= 0.8 and np.percentile(lag, 95) <= 20.0
    print(f"{len(early)} preliminary picks: {len(replaced)} replaced, {len(outcomes) - len(replaced)} retracted; "
          f"arrival to preliminary pick over {len(arrivals)} arrivals: median {np.median(lag):.1f} s, "
          f"{np.mean(lag <= 15) * 100:.0f} % within 15 s, p95 {np.percentile(lag, 95):.1f} s (data time)")


def test_the_catalog_keeps_each_preliminary_pick_with_what_became_of_it(tmp_path):
    """Stored as "preliminary", then "final" naming the pick that replaced it, or "rejected"; a
    resolution is written once (a replayed outcome changes nothing); the final picks table is untouched."""
    from eqt_monitor.catalog.ids import pick_id
    from eqt_monitor.catalog.store import Catalog
    from eqt_monitor.records import EarlyOutcome, Pick, StationKey

    key, t0, sha = StationKey("CI", "BOM", "", "HH"), 1601510460.0, "0" * 64
    early = [Pick(key, "P", t0 + 1.0, 0.4), Pick(key, "S", t0 + 4.0, 0.2), Pick(key, "P", t0 + 30.0, 0.15)]
    final = Pick(key, "P", t0 + 1.12, 0.8, 12.0, 900.0)
    clock = iter([100.0, 150.0, 160.0]).__next__
    with Catalog(tmp_path / "c.sqlite", clock=clock) as catalog:
        assert catalog.add_early_picks(early, model="original", weights_sha256=sha) == 3
        catalog.add_picks([final], model="original", weights_sha256=sha)
        outcomes = [EarlyOutcome(early[0], final), EarlyOutcome(early[1], None)]
        assert catalog.resolve_early_picks(outcomes, weights_sha256=sha) == 2
        assert catalog.resolve_early_picks(outcomes, weights_sha256=sha) == 0
        rows = catalog.early_picks()
        assert [(r.pick.phase, r.pick.time, r.status, r.final_pick_id, r.created, r.resolved) for r in rows] == [
            ("P", t0 + 1.0, "final", pick_id(final, sha), 100.0, 150.0),
            ("S", t0 + 4.0, "rejected", None, 100.0, 150.0),
            ("P", t0 + 30.0, "preliminary", None, 100.0, None)]
        assert [p.time for p in catalog.picks()] == [t0 + 1.12]
        assert [r.pick.time for r in catalog.early_picks(t0 + 2, t0 + 31)] == [t0 + 4.0, t0 + 30.0]


@pytest.mark.slow
def test_the_daemon_with_early_picks_writes_them_first_and_its_final_picks_are_replays(shared, original_weights,
                                                                                       tmp_path):
    """``picks: early`` at a 10 s step, Salton Sea through the SeedLink simulator: preliminary picks in
    the catalog, each resolved by the end, the phase-to-pick metrics for both statuses, and the final
    picks replay's (up to each station's settled time)."""
    from daemon_harness import daemon, free_port, simulate, wait_for, write_config
    from test_daemon import _scrape_or_none, replay_settled_picks, settle_and_stop
    from test_replay import assert_same_picks

    from eqt_monitor.catalog.store import Catalog
    from eqt_monitor.config import load_config
    from eqt_monitor.model.load import load_model

    inventory = shared / "data/salton_sea_2020/stations.xml"
    archive = f"file://{shared}/data/salton_sea_2020/mseed"
    config_path = write_config(tmp_path, f"  - inventory: {inventory}\n", original_weights,
                               f"  step: {STEP}\npicks: early\n")
    port, mport = free_port(), free_port()
    server = simulate(archive, port, 10, tmp_path / "simulate.log")
    run = daemon(config_path, f"seedlink://127.0.0.1:{port}", mport, tmp_path / "run.log", "2020-10-01T00:00:00")
    db = tmp_path / "catalog.sqlite"
    wait_for(lambda: _scrape_or_none(mport), 120, "the daemon's metrics endpoint")
    begin = obspy.UTCDateTime("2020-10-01T00:00:00").timestamp
    final, values = settle_and_stop(run, server, db, lambda: "all data up to" in server.text(), 16, begin + 30)

    with Catalog(db) as catalog:
        early, live = catalog.early_picks(), catalog.picks()
    assert len(early) >= 30
    assert values['eqt_monitor_early_picks_total{outcome="preliminary"}'] == len(early)
    resolved = [r for r in early if r.status != "preliminary"]
    assert {r.status for r in resolved} <= {"final", "rejected"}
    # resolved: every one the picker has settled past (the daemon never ends a stream: the rest wait)
    settled_before = [r for r in early if r.pick.time + MATCH / 100 < final[r.pick.station.id]]
    assert len(settled_before) >= 30 and all(r.status != "preliminary" for r in settled_before)
    ids = {p.id for p in live}
    assert all(r.final_pick_id in ids for r in resolved if r.status == "final")
    assert all(r.created <= r.resolved for r in resolved)
    for status in ("preliminary", "final"):
        assert values[f'eqt_monitor_phase_to_pick_seconds_count{{status="{status}"}}'] > 0

    model = load_model("original", original_weights)
    expected = replay_settled_picks(model, load_config(config_path), begin, begin + 300, archive, final)
    assert len(live) >= 50
    assert_same_picks(live, expected)
