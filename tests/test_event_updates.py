"""Event updates on real data: stations whose picks arrive late (they catch up after the live
associator's horizon passed them) update the events they belong to, an event the complete data
no longer supports is rejected, and the result is the association the punctual run made; a re-run
changes nothing.

salton_sea_2020 (16 stations, 3 minutes of the Westmorland swarm) is replayed once through the
real model into a catalog; its stored picks are then fed to ``LiveAssociator`` the way the daemon
feeds them (written, then fed, in 10 s steps, ``advance`` to the step's end), with the catalog's
wall clock set to the step's time so update times are exact.
"""
from __future__ import annotations

import signal

import pytest
from obspy import UTCDateTime, read_events
from obspy.io.quakeml.core import _validate

from eqt_monitor.catalog.export import export_quakeml
from eqt_monitor.catalog.ids import digest
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.events.associator import AssociatorConfig, associate
from eqt_monitor.events.live import LiveAssociator

pytestmark = pytest.mark.slow

T0 = UTCDateTime("2020-10-01T00:00:00").timestamp
STEP = 10.0
HELD = {"CI.CRR.", "CI.WMD."}  # the two stations that catch up
RELEASE = T0 + 150.0


@pytest.fixture(scope="module")
def salton(shared, original_weights, tmp_path_factory):
    """The replay's stored picks and station coordinates."""
    from salton import salton_replay

    _, catalog, model = salton_replay(shared, original_weights, tmp_path_factory.mktemp("salton") / "picks.sqlite")
    with catalog:
        return catalog.picks(), catalog.stations(), model.weights_sha256


def live(path, salton, held=frozenset(), release=None):
    """The daemon's association over the picks; ``held`` stations' picks arrive all at once at
    ``release``. Returns the catalog and ``{step end: events the step stored or changed}``."""
    picks, stations, sha = salton
    now = [T0]
    catalog = Catalog(path, clock=lambda: now[0])
    catalog.set_stations(stations)
    assoc = LiveAssociator(stations, AssociatorConfig(), store=catalog)
    changes = {}
    t = T0
    while t < T0 + 180.0:
        t += STEP
        arrived = [p for p in picks if t - STEP <= p.time < t and p.station.id not in held]
        if release is not None and t - STEP < release <= t:
            arrived += [p for p in picks if p.station.id in held and p.time < t]
        elif release is not None and t > release:
            arrived += [p for p in picks if t - STEP <= p.time < t and p.station.id in held]
        now[0] = t
        catalog.add_picks(arrived, model="original", weights_sha256=sha)
        assoc.feed(arrived)
        changes[t] = assoc.advance(t)
    now[0] = t + STEP
    changes[now[0]] = assoc.flush()
    return catalog, changes


def pick_sets(catalog) -> set[frozenset[str]]:
    return {frozenset(a.pick_id for a in e.arrivals) for e in catalog.events() if e.status != "rejected"}


@pytest.fixture(scope="module")
def runs(salton, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    return live(folder / "punctual.sqlite", salton), live(folder / "late.sqlite", salton, HELD, RELEASE)


def test_late_station_updates_its_events_and_ends_as_the_punctual_run(runs):
    (punctual, _), (late, changes) = runs
    assert len(punctual.events()) >= 4
    at_release = changes[RELEASE]
    updated = [e for e in at_release if e.version == 2]
    assert len(updated) >= 2
    for event in updated:
        first, second = late.event_versions(event.id)
        assert (first.version, second.version) == (1, 2) and second == late.event(event.id) == event
        assert event.id == "smi:eqt-monitor/event/" + digest(*sorted(a.pick_id for a in first.arrivals))  # stable id
        assert len(second.arrivals) > len(first.arrivals)
        assert {a.pick.station.id for a in second.arrivals} & HELD
        assert not {a.pick.station.id for a in first.arrivals} & HELD
        assert first.updated < RELEASE == second.updated  # when each origin was stored
    # updatedafter: exactly what the release changed, and then what was committed after it
    assert {e.id for e in late.events(updated_after=RELEASE)} == {e.id for t, c in changes.items() if t >= RELEASE
                                                                   for e in c}
    assert {e.id for e in late.events(updated_after=RELEASE + 1)} == {e.id for t, c in changes.items() if t > RELEASE
                                                                       for e in c}
    assert all(e.updated == RELEASE for e in at_release)
    # late or not, the stations' picks end up associated the same way
    assert pick_sets(late) == pick_sets(punctual)


def test_event_superseded_by_late_picks_is_rejected_not_deleted(runs):
    (punctual, _), (late, changes) = runs
    (rejected,) = [e for e in changes[RELEASE] if e.status == "rejected"]
    assert late.event(rejected.id).status == "rejected" and rejected.version == 1
    # an event the 14 punctual stations' picks made and the complete data's association does not:
    # with all 16 stations its picks are in no event, late or punctual
    used = {a.pick_id for a in rejected.arrivals}
    assert len(used) >= 6
    assert not used & set().union(*pick_sets(late)) and not used & set().union(*pick_sets(punctual))
    assert not used & late.associated_pick_ids()  # free for a later association


def test_quakeml_holds_every_origin_and_the_rejection(runs, tmp_path):
    _, (late, changes) = runs
    path = tmp_path / "late.xml"
    assert export_quakeml(late, path) == len(late.events())
    assert _validate(str(path)) is True
    by_id = {e.resource_id.id: e for e in read_events(str(path))}
    for event in changes[RELEASE]:
        q = by_id[event.id]
        versions = late.event_versions(event.id)
        assert [o.creation_info.version for o in q.origins] == [str(v.version) for v in versions]
        assert [o.creation_info.creation_time for o in q.origins] == [UTCDateTime(v.updated) for v in versions]
        assert [len(o.arrivals) for o in q.origins] == [len(v.arrivals) for v in versions]
        assert q.preferred_origin().creation_info.version == str(event.version)
        assert {p.resource_id.id for p in q.picks} == {a.pick_id for v in versions for a in v.arrivals}
        if event.status == "rejected":
            assert q.event_type == "not existing" and q.preferred_origin().evaluation_status == "rejected"
        else:
            assert q.event_type == "earthquake" and q.preferred_origin().evaluation_status is None
    assert sum(len(e.origins) == 2 for e in by_id.values()) == sum(e.version == 2 for e in late.events())


def test_a_rerun_over_the_same_picks_changes_nothing(runs, salton):
    _, (late, _) = runs
    before = late.events()
    picks, stations, _ = salton
    again = LiveAssociator(stations, AssociatorConfig(), store=late)  # a restart on the same catalog
    again.feed(late.picks())  # every pick again, all of them late now
    late.clock = lambda: T0 + 1000.0
    assert again.advance(T0 + 200.0) == [] and again.flush() == []
    assert late.add_events(associate(late.picks(), stations)) == []
    assert late.events() == before
    assert late.events(updated_after=T0 + 1000.0) == []


def test_daemon_updates_events_when_stations_catch_up(shared, original_weights, tmp_path):
    """``eqt-monitor run`` polling a real FDSN dataselect server: 14 stations first; once their events
    are committed and in the rolling QuakeML, SIGHUP adds CRR and WMD, polled from --begin, so their
    picks are late. The events they belong to get version 2 in the catalog (``updated_after`` the
    reload returns them) and two origins in the rolling QuakeML; the result is one clean association
    of the final picks."""
    from daemon_harness import daemon, free_port, station_entries, wait_for, write_config
    from fdsn_server import build_index, dataselect_server
    from test_daemon import assert_events_of_one_clean_association, sigterm, wait_settled_stable

    from eqt_monitor.config import config_from_inventory, load_config

    folder = shared / "data/salton_sea_2020"
    config = config_from_inventory(folder / "stations.xml", [f"file://{folder}/mseed"])
    first = [s.key.station for s in config.stations if f"{s.key.network}.{s.key.station}." not in HELD]
    config_path = write_config(tmp_path, station_entries(config, first), original_weights)
    build_index(sorted((folder / "mseed").iterdir()), tmp_path / "index.sqlite")
    db, quakeml, mport = tmp_path / "catalog.sqlite", tmp_path / "state" / "events.xml", free_port()

    def rolling():
        try:
            return read_events(str(quakeml))
        except Exception:  # not written yet
            return None

    with dataselect_server(tmp_path / "index.sqlite", tmp_path) as address:
        run = daemon(config_path, f"fdsn://{address}", mport, tmp_path / "run.log", "2020-10-01T00:00:00",
                     "--poll-interval", "2")
        try:
            wait_settled_stable(db, 14, T0 + 90, 5, 240)
            before = wait_for(lambda: (q := rolling()) is not None and len(q) >= 2 and q, 120, "the rolling QuakeML")
            assert all(len(e.origins) == 1 for e in before)
            config_path.write_text(config_path.read_text().replace(station_entries(config, first),
                                                                   station_entries(config)))
            reloaded = UTCDateTime().timestamp
            run.signal(signal.SIGHUP)
            wait_for(lambda: "reload: 2 station(s) added" in run.text(), 30, "the reload line")
            with Catalog(db) as catalog:
                wait_for(lambda: any(e.version == 2 for e in catalog.events()), 180, "an updated event")
            wait_settled_stable(db, 16, T0 + 90, 5, 180)
            final = sigterm(run, db)
        finally:
            run.stop()
    assert set(final) >= HELD
    with Catalog(db) as catalog:
        events, picks = catalog.events(), catalog.picks()
        changed = catalog.events(updated_after=reloaded)
        updated = [e for e in events if e.version == 2]
        assert updated and {e.id for e in updated} <= {e.id for e in changed}
        for event in updated:
            old, new = catalog.event_versions(event.id)
            assert len(new.arrivals) > len(old.arrivals) and {a.pick.station.id for a in new.arrivals} & HELD
    by_id = {e.resource_id.id: e for e in read_events(str(quakeml))}  # written at the shutdown
    for event in updated:
        assert [o.creation_info.version for o in by_id[event.id].origins] == ["1", "2"]
        assert by_id[event.id].preferred_origin().resource_id.id.endswith("/2")
    assert_events_of_one_clean_association([e for e in events if e.status != "rejected"], load_config(config_path),
                                           picks, final)
