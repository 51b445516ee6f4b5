"""The catalog on a real PostgreSQL server (``pg_server``, tests/pgserver.py): what only a server
does (a schema version row, a server that goes down or drops the connection, several processes
opening one database at once, passwords kept out of messages), and the Salton Sea replay giving
the same picks, events and QuakeML as into SQLite."""
from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path

import psycopg
import pytest

from eqt_monitor.catalog.backend import catalog_target, is_server, redacted
from eqt_monitor.catalog.schema import SCHEMA_VERSION
from eqt_monitor.catalog.store import Catalog, CatalogWriteError
from eqt_monitor.errors import UserError
from eqt_monitor.records import Pick, StationKey

A = StationKey("CI", "AAA", "", "HH")
T0 = 1601510400.0
SHA = "07b3ffc8" + "0" * 56
WALL_CLOCK = re.compile(rb"<creationTime>[^<]*</creationTime>")  # QuakeML: when the catalog stored an origin


def _picks(n: int, offset: float = 0.0) -> list[Pick]:
    # times with all 53 bits of mantissa in use: a float4 column, or text formatting, would change them
    return [Pick(A, "P", T0 + offset + i + 1 / 3, 0.5 + i / (3 * n), snr=10 / 7) for i in range(n)]


def test_uri_and_path_are_told_apart_and_passwords_are_redacted():
    assert is_server("postgresql://eqt@db.example:5433/catalog") and is_server("postgres://eqt@db/catalog")
    assert not is_server(Path("postgresql:/x")) and not is_server("catalog.sqlite")
    assert catalog_target("postgresql://eqt@db/c") == "postgresql://eqt@db/c"
    assert catalog_target("state/c.sqlite") == Path("state/c.sqlite")
    assert redacted("postgresql://eqt:s3cret@db:5433/c?sslmode=require") == "postgresql://eqt@db:5433/c?sslmode=require"


def test_times_round_trip_bit_exactly_and_match_sqlite(pg_server, tmp_path):
    picks = _picks(50)
    stored = []
    for target in (pg_server.new_database(), tmp_path / "c.sqlite"):
        with Catalog(target) as cat:
            assert cat.add_picks(picks, model="m", weights_sha256=SHA) == 50
            stored.append(cat.picks())
    assert [(p.time, p.probability, p.snr) for p in stored[0]] == [(p.time, p.probability, p.snr) for p in picks]
    assert stored[0] == stored[1]


def test_schema_version_row_newer_and_foreign_databases(pg_server):
    uri = pg_server.new_database()
    with Catalog(uri) as cat:
        assert cat.schema_version == SCHEMA_VERSION
    with psycopg.connect(uri, autocommit=True) as con:
        con.execute("UPDATE eqt_monitor_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(UserError, match=rf"/t\d+: catalog schema version {SCHEMA_VERSION + 1} is newer"):
        Catalog(uri)
    with psycopg.connect(uri, autocommit=True) as con:  # PostgreSQL catalogs begin at schema 3
        con.execute("UPDATE eqt_monitor_schema SET version = 2")
    with pytest.raises(UserError, match="catalog schema version 2 predates this database's support"):
        Catalog(uri)
    other = pg_server.new_database()
    with psycopg.connect(other, autocommit=True) as con:
        con.execute("CREATE TABLE x (a int)")
    with pytest.raises(UserError, match="a database without an eqt-monitor schema version"):
        Catalog(other)


def test_a_schema_3_database_is_migrated(pg_server):
    """Schema 3 → 4 (the preliminary picks' table) on PostgreSQL: a database as schema 3 left it is
    brought up to date by the same MIGRATIONS as an SQLite file, keeping its rows."""
    uri = pg_server.new_database()
    with Catalog(uri) as cat:
        cat.add_picks(_picks(3), model="m", weights_sha256=SHA)
    with psycopg.connect(uri, autocommit=True) as con:  # what schema 3 had: no early_picks
        con.execute("DROP TABLE early_picks")
        con.execute("UPDATE eqt_monitor_schema SET version = 3")
    with Catalog(uri) as cat:
        assert cat.schema_version == SCHEMA_VERSION == 4
        assert len(cat.picks()) == 3 and cat.early_picks() == []
        assert cat.add_early_picks(_picks(2), model="m", weights_sha256=SHA) == 2


def test_processes_opening_a_new_database_at_once_create_the_schema_once(pg_server):
    uri = pg_server.new_database()
    errors: list[BaseException] = []

    def open_and_write(i: int) -> None:
        try:
            with Catalog(uri) as cat:
                cat.add_picks(_picks(20, offset=100 * i), model="m", weights_sha256=SHA)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Catalog(uri) as cat:
        assert len(cat.picks()) == 120


def test_a_dropped_connection_is_a_one_line_write_error_and_the_retry_reconnects(pg_server):
    with Catalog(pg_server.new_database()) as cat:
        cat.add_picks(_picks(3), model="m", weights_sha256=SHA)
        with psycopg.connect(pg_server.uri(), autocommit=True) as admin:  # the server ends our session
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'eqt-monitor'")
        with pytest.raises(CatalogWriteError) as failed:
            cat.add_picks(_picks(3, offset=10), model="m", weights_sha256=SHA)
        assert "\n" not in str(failed.value) and "cannot write the catalog" in str(failed.value)
        assert cat.add_picks(_picks(3, offset=10), model="m", weights_sha256=SHA) == 3  # the retry
        assert len(cat.picks()) == 6


def test_a_server_that_is_down_is_named_without_its_password_and_nothing_is_lost(own_pg_server):
    uri = own_pg_server.new_database().replace("postgres@", "postgres:s3cret@")  # trust: the password is not checked
    with Catalog(uri) as cat:
        assert "s3cret" not in str(cat.path) and str(cat.path) == redacted(uri)
        cat.add_picks(_picks(5), model="m", weights_sha256=SHA)
        own_pg_server.stop()
        for _ in range(2):  # stays refused while the server is down
            with pytest.raises(CatalogWriteError) as down:
                cat.add_picks(_picks(5, offset=10), model="m", weights_sha256=SHA)
            message = str(down.value)
            assert message.startswith(f"{cat.path}: cannot write the catalog") and "\n" not in message
            assert "s3cret" not in message
        with pytest.raises(CatalogWriteError, match="cannot read the catalog"):
            cat.picks()
        own_pg_server.start()
        assert cat.add_picks(_picks(5, offset=10), model="m", weights_sha256=SHA) == 5
        assert len(cat.picks()) == 10
    with pytest.raises(CatalogWriteError, match=r"^postgresql://postgres@127\.0\.0\.1:\d+/nope: cannot open the catalog"):
        Catalog(own_pg_server.uri("nope"))


@pytest.mark.slow
def test_salton_replay_into_sqlite_and_postgresql_gives_the_same_catalog(shared, original_weights, pg_server,
                                                                        tmp_path):
    from eqt_monitor.cli import main

    folder = shared / "data" / "salton_sea_2020"
    targets = {"sqlite": str(tmp_path / "salton.sqlite"), "postgresql": pg_server.new_database()}
    for name, db in targets.items():
        assert main(["replay", "--inventory", str(folder / "stations.xml"), "--source", f"file://{folder}/mseed/*.mseed",
                     "--start", "2020-10-01T00:00", "--end", "2020-10-01T00:03", "--weights", str(original_weights),
                     "--db", db, "--quakeml", str(tmp_path / f"{name}.xml"), "--no-progress"]) == 0
        for fmt in ("quakeml", "csv", "eqt-csv"):
            assert main(["export", "--db", db, "--format", fmt, "--out", str(tmp_path / f"{name}.{fmt}")]) == 0
    with Catalog(targets["sqlite"]) as lite, Catalog(targets["postgresql"]) as pg:
        events = lite.events()
        assert len(lite.picks()) > 100 and len(events) >= 4 and all(e.magnitude is not None for e in events)
        assert pg.picks() == lite.picks()  # every field, times bit for bit
        assert pg.detections() == lite.detections()
        content = lambda es: [dataclasses.replace(e, updated=None) for e in es]  # noqa: E731 (wall-clock times differ)
        assert content(pg.events()) == content(events)  # origins, uncertainties, arrivals and picks, magnitudes
        assert pg.stations() == lite.stations()
        assert dataclasses.replace(pg.last_run(), started=0) == dataclasses.replace(lite.last_run(), started=0)
        assert pg.associated_pick_ids() == lite.associated_pick_ids()
    for suffix in ("xml", "quakeml", "csv", "eqt-csv"):  # byte for byte, but for when each catalog stored an origin
        lite, pg = (WALL_CLOCK.sub(b"", (tmp_path / f"{name}.{suffix}").read_bytes()) for name in targets)
        assert pg == lite
