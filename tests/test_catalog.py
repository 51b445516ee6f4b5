"""The catalog: ids, idempotent writes, queries, schema versioning, a writer thread with readers; each
backend-neutral test runs on an SQLite file and on a real PostgreSQL server (``catalog_target``)."""
from __future__ import annotations

import dataclasses
import sqlite3
import threading

import pytest
from catalog_v2 import write_v2_catalog

from eqt_monitor.catalog.ids import pick_id
from eqt_monitor.catalog.schema import SCHEMA_VERSION
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.errors import UserError
from eqt_monitor.records import (Arrival, Detection, Event, Magnitude, Origin, OriginUncertainty, Pick, Run, StationKey,
                                 StationMagnitude)

A = StationKey("CI", "AAA", "", "HH")
B = StationKey("CI", "BBB", "00", "EH")
T0 = 1601510400.0  # 2020-10-01T00:00:00Z
SHA = "07b3ffc8" + "0" * 56


def _picks() -> list[Pick]:
    return [
        Pick(A, "P", T0 + 1.234, 0.91, snr=12.5, amplitude=3400.0),
        Pick(A, "S", T0 + 2.5, 0.55),
        Pick(B, "P", T0 + 1.9, 0.8, snr=4.0),
        Pick(B, "S", T0 + 3.75, 0.45),
    ]


def _event(picks: list[Pick]) -> Event:
    origin = Origin(T0 + 0.5, 33.0, -115.6, 8.0, 0.05, "test")
    return Event(origin, tuple(Arrival(p, 0.01 * i, 10.0 + i, 45.0) for i, p in enumerate(picks)))


def test_picks_round_trip_and_idempotent(catalog_target):
    cat = Catalog(catalog_target)
    assert cat.add_picks(_picks(), model="original", weights_sha256=SHA) == 4
    assert cat.add_picks(_picks(), model="original", weights_sha256=SHA) == 0
    # the same pick 3 ms earlier is the same pick (10 ms resolution); from other weights it is new
    moved = Pick(A, "P", T0 + 1.231, 0.9)
    assert cat.add_picks([moved], model="original", weights_sha256=SHA) == 0
    assert cat.add_picks([moved], model="x", weights_sha256="f" * 64) == 1
    got = cat.picks()
    assert len(got) == 5
    assert got[:2] == [moved, _picks()[0]]  # ordered by time
    assert cat.picks(start=T0 + 1.5, end=T0 + 3.0) == [_picks()[2], _picks()[1]]
    assert cat.picks(stations=["CI.BBB.00"]) == [_picks()[2], _picks()[3]]
    assert cat.picks(start=T0, stations=[A]) == [p for p in got if p.station == A]
    assert cat.picks(stations=[]) == []


def test_pick_ids_are_stable_and_content_based():
    p = _picks()[0]
    assert pick_id(p, SHA) == pick_id(Pick(A, "P", T0 + 1.2341, 0.1), SHA)
    assert pick_id(p, SHA).startswith("smi:eqt-monitor/pick/")
    assert pick_id(p, SHA) != pick_id(p, "0" * 64)
    assert pick_id(p, SHA) != pick_id(Pick(A, "S", p.time, 0.9), SHA)
    assert pick_id(p, SHA) != pick_id(Pick(A, "P", p.time + 0.01, 0.9), SHA)


def test_data_survives_reopen_in_wal_mode(tmp_path):
    path = tmp_path / "c.sqlite"
    with Catalog(path) as cat:
        cat.add_picks(_picks(), model="original", weights_sha256=SHA)
        cat.add_detections([Detection(A, T0 + 1.0, T0 + 6.0, 0.8)], model="original", weights_sha256=SHA)
    with Catalog(path) as cat:
        assert len(cat.picks()) == 4
        assert cat.schema_version == SCHEMA_VERSION
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_detections_overlap_query_and_idempotent(catalog_target):
    cat = Catalog(catalog_target)
    dets = [Detection(A, T0 + 1.0, T0 + 6.0, 0.8), Detection(B, T0 + 10.0, T0 + 12.0, 0.6)]
    assert cat.add_detections(dets, model="original", weights_sha256=SHA) == 2
    assert cat.add_detections(dets, model="original", weights_sha256=SHA) == 0
    assert cat.detections(start=T0 + 5.0, end=T0 + 9.0) == [dets[0]]
    assert cat.detections(start=T0 + 7.0) == [dets[1]]
    assert cat.detections(stations=[B]) == [dets[1]]


def test_newer_schema_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "future.sqlite"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(UserError, match=rf"future\.sqlite.*schema version {SCHEMA_VERSION + 1} is newer"):
        Catalog(path)


def test_foreign_sqlite_and_garbage_files_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE x (a)")
    con.commit()
    con.close()
    with pytest.raises(UserError, match="other.sqlite"):
        Catalog(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="junk.sqlite"):
        Catalog(junk)


def test_events_are_stored_once_and_read_back(catalog_target):
    cat = Catalog(catalog_target)
    cat.add_picks(_picks(), model="original", weights_sha256=SHA)
    picks = cat.picks()  # stored picks carry their ids, which arrivals refer to
    assert [p.id for p in picks] == [pick_id(p, SHA) for p in picks]
    added = cat.add_events([_event(picks)])
    assert len(added) == 1
    eid = added[0].id
    assert eid.startswith("smi:eqt-monitor/event/")
    # the same event again, or one that reuses most of its picks, is not stored twice
    assert cat.add_events([_event(picks)]) == []
    assert cat.add_events([_event(picks[:3])]) == []
    got = cat.event(eid)
    assert got.origin == _event(picks).origin
    assert [a.pick for a in got.arrivals] == sorted(picks, key=lambda p: p.time)
    assert all(a.pick_id == pick_id(a.pick, SHA) for a in got.arrivals)
    assert cat.event(got.short_id).id == eid
    assert cat.events(start=T0, end=T0 + 1) == [got]
    assert cat.events(start=T0 + 1) == []
    assert cat.associated_pick_ids() == {pick_id(p, SHA) for p in picks}
    with pytest.raises(UserError, match="no event 'nope'"):
        cat.event("nope")


def test_event_with_unknown_pick_is_rejected_whole(catalog_target):
    cat = Catalog(catalog_target)
    stamped = [dataclasses.replace(p, id=pick_id(p, SHA)) for p in _picks()]
    cat.add_picks(stamped[:2], model="original", weights_sha256=SHA)
    with pytest.raises(ValueError, match="CI.BBB.00 P .* is not in the catalog"):
        cat.add_events([_event(stamped[:2]), _event(stamped)])
    with pytest.raises(ValueError, match="has no id"):
        cat.add_events([_event(_picks()[:2])])
    assert cat.events() == []  # the transaction rolled back


def test_magnitude_set_and_replaced(catalog_target):
    cat = Catalog(catalog_target)
    cat.add_picks(_picks(), model="original", weights_sha256=SHA)
    (ev,) = cat.add_events([_event(cat.picks())])
    none = Magnitude("ML", None, None, 0, "test", reason="no response for CI.AAA.")
    cat.set_magnitude(ev.id, none)
    assert cat.event(ev.id).magnitude == none
    sm = (StationMagnitude(A, 2.1, 1e-6, 12.0), StationMagnitude(B, 2.3, 2e-6, 20.0))
    ml = Magnitude("ML", 2.2, 0.1, 2, "test", None, sm)
    cat.set_magnitude(ev.id, ml)
    assert cat.event(ev.id).magnitude == ml
    with pytest.raises(UserError, match="no event"):
        cat.set_magnitude("smi:eqt-monitor/event/x", ml)


def test_uncertainty_version_status_and_update_time_round_trip(catalog_target):
    cat = Catalog(catalog_target, clock=lambda: 1700000000.25)
    cat.add_picks(_picks(), model="original", weights_sha256=SHA)
    unc = OriginUncertainty(90.0, 2.5, 1.25, 33.0, 4.5, 0.3, 210.0, 4, 2, 10.0)
    event = _event(cat.picks())
    (added,) = cat.add_events([dataclasses.replace(event, origin=dataclasses.replace(event.origin, uncertainty=unc))])
    assert (added.version, added.status, added.updated) == (1, "preliminary", 1700000000.25)
    assert added.origin.uncertainty == unc
    assert cat.events() == [added] == cat.latest_events(5)
    assert cat.event(added.id) == added and cat.event_versions(added.id) == [added]
    assert cat.events(updated_after=1700000000.25) == [added]
    assert cat.events(updated_after=1700000000.26) == []
    cat.clock = lambda: 1700000100.0  # a magnitude changes the event
    cat.set_magnitude(added.id, Magnitude("ML", 1.5, 0.2, 2, "test"))
    assert cat.events(updated_after=1700000000.26)[0].updated == 1700000100.0


def test_reassociated_span_updates_keeps_history_and_rejects(tmp_path):
    """``add_events(span=...)``: the same picks change nothing; more picks are the event's next
    version under its first id (the old origin and its magnitude stay); an event of the span that
    nothing continues is rejected and its picks are free again."""
    now = [100.0]
    cat = Catalog(tmp_path / "c.sqlite", clock=lambda: now[0])
    extra = [Pick(A, "P", T0 + 20.0, 0.9), Pick(B, "P", T0 + 21.0, 0.9), Pick(A, "S", T0 + 22.0, 0.9)]
    cat.add_picks(_picks() + extra, model="original", weights_sha256=SHA)
    picks = cat.picks()
    first, other = _event(picks[:3]), Event(Origin(T0 + 19.0, 33.2, -115.5, 5.0, None, "test"),
                                            tuple(Arrival(p, 0.0, 5.0) for p in picks[4:]))
    (v1, lone) = cat.add_events([first, other])
    ml = Magnitude("ML", 2.0, None, 1, "test")
    cat.set_magnitude(v1.id, ml)
    span = (T0, T0 + 30.0)
    now[0] = 200.0
    assert cat.add_events([first, other], span=span) == []  # the same picks: no version, no update time
    assert [e.version for e in cat.events()] == [1, 1] and cat.events(updated_after=150.0) == []
    now[0] = 300.0
    (updated, rejected) = cat.add_events([_event(picks[:4])], span=span)  # a fourth pick came late
    assert (updated.id, updated.version, updated.status, updated.updated) == (v1.id, 2, "preliminary", 300.0)
    assert len(updated.arrivals) == 4 and updated.magnitude is None
    assert (rejected.id, rejected.status, rejected.version, rejected.updated) == (lone.id, "rejected", 1, 300.0)
    old, new = cat.event_versions(v1.id)
    assert (old.version, len(old.arrivals), old.magnitude, old.updated) == (1, 3, ml, 100.0) and new == updated
    assert cat.event(lone.id) == rejected  # rejected, not deleted
    assert cat.associated_pick_ids() == {p.id for p in picks[:4]}
    assert [e.id for e in cat.events(updated_after=300.0)] == [v1.id, lone.id]
    cat.set_magnitude(v1.id, ml)  # the event's magnitude is its preferred origin's
    assert cat.event(v1.id).magnitude == ml and cat.event_versions(v1.id)[0].magnitude == ml
    now[0] = 400.0
    assert cat.add_events([_event(picks[:4])], span=span) == []  # the rejected stays rejected, v2 unchanged
    assert cat.event(v1.id).version == 2


def _v2_rows() -> tuple[list[tuple], list[dict]]:
    picks = [(pick_id(p, SHA), p.station.network, p.station.station, p.station.location, p.station.channel_prefix,
              p.phase, p.time, round(p.time * 100), p.probability, p.snr, p.amplitude, "original", SHA, None, None)
             for p in _picks()]
    events = [
        {"hash": "a" * 20, "origin": (T0 + 0.5, 33.0, -115.6, 8.0, 0.05, "PyOcto test"),
         "arrivals": [(picks[0][0], "P", 0.01, 10.0, 45.0), (picks[1][0], "S", -0.02, 10.0, 45.0)],
         "magnitude": ("ML", 2.2, 0.1, 1, "test", None),
         "station_magnitudes": [("CI", "AAA", "", "HH", 2.2, 1e-6, 12.0)]},
        {"hash": "b" * 20, "origin": (T0 + 1.0, 33.1, -115.5, 6.0, None, "PyOcto test"),
         "arrivals": [(picks[2][0], "P", 0.0, 20.0, None), (picks[3][0], "S", 0.1, 20.0, None)]},
    ]
    return picks, events


def _columns(path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(path)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    out = {t: con.execute(f"PRAGMA table_info({t})").fetchall() for t in tables}
    out["indexes"] = sorted(con.execute("SELECT name, tbl_name FROM sqlite_master WHERE type='index'").fetchall())
    con.close()
    return out


def test_schema_2_catalog_is_migrated_with_its_events(tmp_path):
    """A version-2 file (one origin and magnitude per event) becomes version 3: same events, ids,
    arrivals and magnitudes, each as version 1 with no recorded update time; tables as a new file's."""
    picks, events = _v2_rows()
    write_v2_catalog(tmp_path / "v2.sqlite", picks, events)
    with Catalog(tmp_path / "v2.sqlite", clock=lambda: 1700000000.0) as cat:
        assert cat.schema_version == SCHEMA_VERSION == 4  # 2 -> 3 (event history) -> 4 (early picks)
        assert cat._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        first, second = cat.events()
        assert (first.id, second.id) == ("smi:eqt-monitor/event/" + "a" * 20, "smi:eqt-monitor/event/" + "b" * 20)
        assert first.origin == Origin(T0 + 0.5, 33.0, -115.6, 8.0, 0.05, "PyOcto test")
        assert [(a.pick_id, a.residual, a.azimuth) for a in second.arrivals] == [
            (picks[2][0], 0.0, None), (picks[3][0], 0.1, None)]
        assert first.magnitude == Magnitude("ML", 2.2, 0.1, 1, "test", None, (StationMagnitude(A, 2.2, 1e-6, 12.0),))
        assert second.magnitude is None
        assert [(e.version, e.status, e.updated) for e in (first, second)] == [(1, "preliminary", None)] * 2
        assert cat.event_versions(first.id) == [first]
        assert cat.events(updated_after=0.0) == []  # no update time was recorded before version 3
        assert cat.associated_pick_ids() == {p[0] for p in picks}
        cat.set_magnitude(second.id, Magnitude("ML", 1.0, None, 1, "test"))  # the migrated file is writable
        assert cat.events(updated_after=0.0)[0].id == second.id
    fresh = tmp_path / "fresh.sqlite"
    Catalog(fresh).close()
    assert _columns(tmp_path / "v2.sqlite") == _columns(fresh)


def test_schema_2_migration_refuses_a_broken_file_whole(tmp_path):
    picks, events = _v2_rows()
    path = tmp_path / "v2.sqlite"
    write_v2_catalog(path, picks[:2] + picks[3:], events[:1])
    con = sqlite3.connect(path)  # a v2 file whose arrival refers to a pick that is not there
    con.execute("INSERT INTO events VALUES ('smi:eqt-monitor/event/b', 1.0)")
    con.execute("INSERT INTO origins VALUES ('smi:eqt-monitor/origin/b', 'smi:eqt-monitor/event/b', 1, 2, 3, 4, NULL, 'x')")
    con.execute("INSERT INTO arrivals VALUES ('smi:eqt-monitor/origin/b', 'smi:eqt-monitor/pick/missing', 'P', 0, 1, NULL)")
    con.commit()
    con.close()
    with pytest.raises(UserError, match=r"v2\.sqlite: cannot migrate the catalog: table arrivals .* missing picks row"):
        Catalog(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2  # rolled back: still the version-2 file
    assert con.execute("SELECT count(*) FROM origins").fetchone()[0] == 2
    con.close()


def test_state_runs_and_stations(catalog_target):
    cat = Catalog(catalog_target)
    assert cat.get_state("horizon") is None and cat.last_run() is None
    cat.set_state("horizon", "123.5")
    assert cat.get_state("horizon") == "123.5"
    cat.add_run(Run(T0, "file:///x/*.mseed", "original", SHA, {"step": 10}))
    cat.add_run(Run(T0 + 5, "sds:///y", "conservative", SHA, {}))
    assert cat.last_run() == Run(T0 + 5, "sds:///y", "conservative", SHA, {})
    cat.set_stations({"CI.AAA.": (33.0, -115.5, -10.0)})
    assert cat.stations() == {"CI.AAA.": (33.0, -115.5, -10.0)}


def test_one_writer_thread_and_readers(catalog_target):
    cat = Catalog(catalog_target)
    n = 300
    errors: list[BaseException] = []

    def write():
        try:
            for i in range(n):
                cat.add_picks([Pick(A, "P", T0 + i, 0.5)], model="m", weights_sha256=SHA)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while writer.is_alive():
        now = len(cat.picks())
        assert now >= seen  # readers never see picks disappear or a half-written state
        seen = now
    writer.join()
    assert not errors
    assert len(cat.picks()) == n
    # a second connection (another process's view) reads the same
    assert len(Catalog(catalog_target).picks()) == n
