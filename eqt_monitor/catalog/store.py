"""The event catalog: picks, detections, events, origins, arrivals and magnitudes, in an SQLite
file (the default) or a PostgreSQL database (``catalog.backend``: one SQL text for both).

An SQLite file is opened in WAL mode so exporters and plotters can read while the daemon
writes; a PostgreSQL database takes several writing processes. Every record has a stable
resource id derived from its content (``smi:eqt-monitor/...``), and every write is idempotent: storing the same picks, detections or events again adds nothing.
The schema version is kept in ``PRAGMA user_version`` (a one-row table on PostgreSQL); a catalog
written by a newer eqt-monitor is refused with a clear error instead of being misread. A write the
database refuses (a full disk, a read-only file, a server that is down or dropped the connection)
is rolled back and raised as ``CatalogWriteError``, one line naming the file or server (without
its password); the next call reconnects.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import astuple, replace
from pathlib import Path

from eqt_monitor.catalog.backend import (PostgreSQLConnection, SQLiteConnection, connect, driver_error, is_server,
                                        one_line, redacted)
from eqt_monitor.catalog.ids import (ID_PREFIX, centiseconds, detection_id, digest, early_pick_id, magnitude_id, origin_id,
                                    pick_id)
from eqt_monitor.catalog.query import EventQuery
from eqt_monitor.catalog.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from eqt_monitor.errors import UserError
from eqt_monitor.records import (Arrival, Detection, EarlyOutcome, EarlyPickRecord, Event, Magnitude, Origin,
                                 OriginUncertainty, Pick, Run, StationKey, StationMagnitude)

class CatalogWriteError(UserError):
    """A write the catalog did not take, or a server that could not be reached (rolled back;
    nothing was half written)."""


Connection = SQLiteConnection | PostgreSQLConnection


# origins' columns for the OriginUncertainty fields, in the dataclass's field order
UNCERTAINTY_COLUMNS = ("confidence_level", "horizontal_uncertainty_km", "min_horizontal_uncertainty_km",
                       "azimuth_max_horizontal", "depth_uncertainty_km", "time_uncertainty_s", "azimuthal_gap",
                       "used_phase_count", "used_station_count", "minimum_distance_km")


def _key(row) -> StationKey:
    return StationKey(row["network"], row["station"], row["location"], row["channel_prefix"])


def _where(clauses: list[tuple[str, object]]) -> tuple[str, list]:
    used = [(c, v) for c, v in clauses if v is not None]
    sql = " AND ".join(c for c, _ in used)
    return (f" WHERE {sql}" if sql else ""), [v for _, v in used]


def _station_filter(stations: Iterable[StationKey | str] | None) -> tuple[str, list]:
    if stations is None:
        return "", []
    ids = sorted({s.id if isinstance(s, StationKey) else s for s in stations})
    if not ids:
        return " AND FALSE", []
    marks = ",".join("?" * len(ids))
    return f" AND (network || '.' || station || '.' || location) IN ({marks})", ids


class Catalog:
    """The SQLite event catalog (WAL mode). One writer thread plus readers may share an instance.

    ``clock`` gives the wall-clock POSIX time recorded as events' and origins' creation and update
    times (``time.time``; tests pass a fixed one to compare exactly).
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time):
        #: where the catalog is: the file, or the server URI without its password (log lines, messages)
        self.path: Path | str = redacted(path) if is_server(path) else Path(path)
        self.clock = clock
        self._lock = threading.RLock()
        self._db: Connection | None = None
        try:
            self._db = connect(path)
            self._migrate()
        except Exception as exc:
            self._close_quietly()
            kind = driver_error(exc)
            if kind == "operational":  # e.g. a full disk, a missing folder, a server that is down
                raise CatalogWriteError(f"{self.path}: cannot open the catalog ({one_line(exc)})") from exc
            if kind == "unusable":
                raise UserError(f"{self.path}: not a usable eqt-monitor catalog ({one_line(exc)})") from exc
            raise

    # -- housekeeping ---------------------------------------------------------------------

    def _migrate(self) -> None:
        if self._db.schema_version() == SCHEMA_VERSION:  # the usual case: no write (a read-only file opens)
            return
        with self._db.migrating(), self._transaction() as db:
            db.lock_schema()  # another process may be creating or migrating the same database right now
            version = db.schema_version()
            if version > SCHEMA_VERSION:
                raise UserError(
                    f"{self.path}: catalog schema version {version} is newer than this eqt-monitor "
                    f"understands ({SCHEMA_VERSION}); upgrade eqt-monitor"
                )
            if version == 0:
                if db.has_tables():
                    raise UserError(f"{self.path}: a database without an eqt-monitor schema version")
                statements = [s for s in SCHEMA.split(";") if s.strip()]
            elif version < db.first_version:
                raise UserError(f"{self.path}: catalog schema version {version} predates this database's support "
                                f"(from version {db.first_version}); export it and store it again")
            else:
                statements = [s for step in range(version, SCHEMA_VERSION) for s in MIGRATIONS[step]]
            for statement in statements:
                db.execute(db.ddl(statement))
            broken = db.foreign_key_problem()
            if broken is not None:
                raise UserError(f"{self.path}: cannot migrate the catalog: {broken}")
            db.set_schema_version(SCHEMA_VERSION)

    def _transaction(self):
        return _Transaction(self._db, self._lock, self.path)

    @contextmanager
    def _reading(self):
        """The catalog lock around reads; an unreachable server is a ``CatalogWriteError`` (one line)."""
        with self._lock:
            try:
                yield self._db
            except self._db.operational as exc:
                raise CatalogWriteError(f"{self.path}: cannot read the catalog ({one_line(exc)})") from exc

    def _close_quietly(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except Exception:  # closing after a failed open: the open's error is the one to report
                pass

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._close_quietly()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        with self._reading() as db:
            return db.schema_version()

    # -- picks and detections -------------------------------------------------------------

    def add_picks(self, picks: Iterable[Pick], *, model: str, weights_sha256: str) -> int:
        """Store picks made by ``model`` with the weights ``weights_sha256`` (under the id each carries,
        else ``ids.pick_id``); returns how many were new."""
        rows = [
            (p.id or pick_id(p, weights_sha256), p.station.network, p.station.station, p.station.location,
             p.station.channel_prefix, p.phase, float(p.time), centiseconds(p.time), float(p.probability),
             None if p.snr is None else float(p.snr), None if p.amplitude is None else float(p.amplitude),
             model, weights_sha256, _real(p.probability_std), _real(p.time_uncertainty))
            for p in picks
        ]
        with self._transaction() as db:
            return db.execute_many("INSERT INTO picks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                                  "ON CONFLICT DO NOTHING", rows)

    def picks(self, start: float | None = None, end: float | None = None,
              stations: Iterable[StationKey | str] | None = None) -> list[Pick]:
        """Picks with ``start <= time < end`` (either bound optional), optionally for some stations, by
        time; each carries its resource id (``Pick.id``)."""
        where, args = _where([("time >= ?", start), ("time < ?", end)])
        sfilter, sargs = _station_filter(stations)
        if sfilter and not where:
            where = " WHERE TRUE"
        with self._reading():
            rows = self._db.execute(f"SELECT * FROM picks{where}{sfilter} ORDER BY time, id", args + sargs).fetchall()
        return [_pick_from_row(r) for r in rows]

    def latest_picks(self, limit: int) -> list[Pick]:
        """The ``limit`` latest picks (by pick time), newest first."""
        with self._reading():
            rows = self._db.execute("SELECT * FROM picks ORDER BY time DESC, id DESC LIMIT ?", (limit,)).fetchall()
        return [_pick_from_row(r) for r in rows]

    def last_pick_times(self) -> dict[str, float]:
        """``{NET.STA.LOC: time of its latest pick}`` over the stations with picks."""
        with self._reading():
            rows = self._db.execute("SELECT network, station, location, max(time) FROM picks "
                                    "GROUP BY network, station, location").fetchall()
        return {f"{r[0]}.{r[1]}.{r[2]}": r[3] for r in rows}

    def pick_sources(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """``pick id -> (model, weights_sha256)`` for the given pick ids."""
        ids = list(ids)
        out: dict[str, tuple[str, str]] = {}
        with self._reading():
            for chunk in range(0, len(ids), 500):
                part = ids[chunk:chunk + 500]
                rows = self._db.execute(
                    f"SELECT id, model, weights_sha256 FROM picks WHERE id IN ({','.join('?' * len(part))})", part
                ).fetchall()
                out.update({r["id"]: (r["model"], r["weights_sha256"]) for r in rows})
        return out

    def add_detections(self, detections: Iterable[Detection], *, model: str, weights_sha256: str) -> int:
        """Store detections; returns how many were new."""
        rows = [
            (detection_id(d, weights_sha256), d.station.network, d.station.station, d.station.location,
             d.station.channel_prefix, float(d.start), float(d.end), float(d.probability), model, weights_sha256,
             _real(d.probability_std))
            for d in detections
        ]
        with self._transaction() as db:
            return db.execute_many("INSERT INTO detections VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING", rows)

    def detections(self, start: float | None = None, end: float | None = None,
                   stations: Iterable[StationKey | str] | None = None) -> list[Detection]:
        """Detections that overlap ``[start, end)`` (either bound optional), by start time."""
        where, args = _where([('"end" >= ?', start), ("start < ?", end)])
        sfilter, sargs = _station_filter(stations)
        if sfilter and not where:
            where = " WHERE TRUE"
        with self._reading():
            rows = self._db.execute(f"SELECT * FROM detections{where}{sfilter} ORDER BY start, id",
                                    args + sargs).fetchall()
        return [Detection(_key(r), r["start"], r["end"], r["probability"], r["probability_std"]) for r in rows]

    # -- stations, runs, state ----------------------------------------------------------------

    def set_stations(self, coordinates: Mapping[str, tuple[float, float, float]]) -> None:
        """Record station coordinates ``NET.STA.LOC -> (lat, lon, elevation_m)`` (replacing older values)."""
        rows = [(k, float(v[0]), float(v[1]), float(v[2])) for k, v in sorted(coordinates.items())]
        with self._transaction() as db:
            db.execute_many("INSERT INTO stations VALUES (?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
                           "latitude = excluded.latitude, longitude = excluded.longitude, "
                           "elevation_m = excluded.elevation_m", rows)

    def stations(self) -> dict[str, tuple[float, float, float]]:
        """All recorded station coordinates ``NET.STA.LOC -> (lat, lon, elevation_m)``."""
        with self._reading():
            rows = self._db.execute("SELECT * FROM stations ORDER BY id").fetchall()
        return {r["id"]: (r["latitude"], r["longitude"], r["elevation_m"]) for r in rows}

    def add_run(self, run: Run) -> None:
        """Record a run (its source URI, model and settings) so later commands can repeat its processing."""
        with self._transaction() as db:
            db.execute("INSERT INTO runs (started, source, model, weights_sha256, settings) VALUES (?,?,?,?,?)",
                       (run.started, run.source, run.model, run.weights_sha256,
                        json.dumps(run.settings, sort_keys=True)))

    def last_run(self) -> Run | None:
        """The most recently recorded run, or None."""
        with self._reading():
            r = self._db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if r is None:
            return None
        return Run(r["started"], r["source"], r["model"], r["weights_sha256"], json.loads(r["settings"]))

    def get_state(self, key: str, default: str | None = None) -> str | None:
        """A value from the small key/value state table (e.g. the live associator's horizon)."""
        with self._reading():
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else row["value"]

    def states(self, prefix: str) -> dict[str, str]:
        """The state entries whose key starts with ``prefix`` (e.g. every shard's horizon)."""
        with self._reading() as db:
            rows = db.execute("SELECT key, value FROM state WHERE substr(key, 1, ?) = ? ORDER BY key",
                              (len(prefix), prefix)).fetchall()
        return {r["key"]: r["value"] for r in rows}

    def set_state(self, key: str, value: str) -> None:
        """Set a value in the key/value state table."""
        self.set_states({key: value})

    def set_states(self, values: Mapping[str, str]) -> None:
        """Set several values of the state table in one transaction (all or none)."""
        with self._transaction() as db:
            for key, value in values.items():
                db.execute(_SET_STATE, (key, value))

    # -- preliminary picks (picks: early) ---------------------------------------------------

    def add_early_picks(self, picks: Iterable[Pick], *, model: str, weights_sha256: str) -> int:
        """Store preliminary picks (status "preliminary", created now); returns how many were new."""
        now = self.clock()
        rows = [(early_pick_id(p, weights_sha256), p.station.network, p.station.station, p.station.location,
                 p.station.channel_prefix, p.phase, float(p.time), float(p.probability), model, weights_sha256,
                 "preliminary", None, now, None) for p in picks]
        with self._transaction() as db:
            return db.execute_many("INSERT INTO early_picks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                                  "ON CONFLICT DO NOTHING", rows)

    def resolve_early_picks(self, outcomes: Iterable[EarlyOutcome], *, weights_sha256: str) -> int:
        """Mark preliminary picks "final" (naming the final pick that replaced them) or "rejected"
        (retracted), resolved now; a pick already resolved stays as it is. Returns how many changed."""
        now = self.clock()
        rows = [("rejected" if o.final is None else "final",
                 None if o.final is None else o.final.id or pick_id(o.final, weights_sha256), now,
                 early_pick_id(o.early, weights_sha256)) for o in outcomes]
        with self._transaction() as db:
            return db.execute_many("UPDATE early_picks SET status = ?, final_pick_id = ?, resolved = ? "
                                   "WHERE id = ? AND status = 'preliminary'", rows)

    def early_picks(self, start: float | None = None, end: float | None = None) -> list[EarlyPickRecord]:
        """Preliminary picks with ``start <= time < end`` (either bound optional), by time."""
        where, args = _where([("time >= ?", start), ("time < ?", end)])
        with self._reading():
            rows = self._db.execute(f"SELECT * FROM early_picks{where} ORDER BY time, id", args).fetchall()
        return [EarlyPickRecord(Pick(_key(r), r["phase"], r["time"], r["probability"], id=r["id"]), r["status"],
                                r["final_pick_id"], r["created"], r["resolved"]) for r in rows]

    # -- events ---------------------------------------------------------------------------------

    def add_events(self, events: Iterable[Event], *, state: Mapping[str, str] | None = None,
                   span: tuple[float, float] | None = None) -> list[Event]:
        """Store located events (and ``state`` entries) in one transaction; returns the events it changed.

        Arrivals refer to stored picks by the id each pick carries (``Pick.id``; a pick without one,
        or one not stored, is a ``ValueError`` and nothing is written). A new event's id is a hash
        of its arrivals' pick ids; it keeps that id in every later version.

        Without ``span``: an event is not stored again when its id exists, nor when half or more of
        its picks already belong to a stored event, so re-associating a span adds nothing; returns
        the new events.

        With ``span=(start, end)`` the events are a re-association of every origin in ``[start, end)``
        (late picks came in). An event whose exact pick set a stored event already has changes
        nothing; one that shares half or more of its own picks, or of the stored event's, with the
        stored event sharing most becomes that event's next version (a new preferred origin, version + 1, ``updated`` now; the old origin
        stays in its history); any other is new. A stored event with origin time in the span that
        none of them continues is marked ``rejected`` (never deleted). Returns the new, updated and
        rejected events.
        """
        with self._transaction() as db:
            if span is None:
                changed = [e for e in (self._insert_event(db, event) for event in events) if e is not None]
            else:
                changed = self._reassociate(db, list(events), span)
            for key, value in (state or {}).items():
                db.execute(_SET_STATE, (key, value))
        return changed

    def _reassociate(self, db: Connection, events: list[Event], span: tuple[float, float]) -> list[Event]:
        now = self.clock()
        continued: set[str] = set()  # stored events one of ``events`` is (a version of)
        changed: list[str] = []
        for event in events:
            arrivals = list(event.arrivals)
            self._check_picks_stored(db, arrivals)
            ids = sorted({a.pick_id for a in arrivals})
            owner = self._owner(db, ids, continued)
            if owner is not None and owner[1] == owner[2] == len(ids):  # the same picks: nothing changed
                continued.add(owner[0])
                continue
            if owner is not None and 2 * owner[1] >= min(len(ids), owner[2]):  # half of either's picks
                event_id = owner[0]
            else:
                event_id = f"{ID_PREFIX}/event/{digest(*ids)}"
                if not db.execute("SELECT 1 FROM events WHERE id=?", (event_id,)).fetchone():
                    self._create_event(db, event_id, event, arrivals)  # new: nothing to continue
                    continued.add(event_id)
                    changed.append(event_id)
                    continue
            self._add_version(db, event_id, event.origin, arrivals, event.magnitude, now)
            continued.add(event_id)
            changed.append(event_id)
        for row in db.execute("SELECT id FROM events WHERE status != 'rejected' AND time >= ? AND time < ? "
                              "ORDER BY time, id", span).fetchall():
            if row["id"] not in continued:
                db.execute("UPDATE events SET status='rejected', updated=? WHERE id=?", (now, row["id"]))
                changed.append(row["id"])
        rows = {r["id"]: r for r in (db.execute("SELECT * FROM events WHERE id=?", (i,)).fetchone() for i in changed)}
        return [self._read_event(rows[i]) for i in changed]

    @staticmethod
    def _owner(db: Connection, ids: list[str], skip: set[str]) -> tuple[str, int, int] | None:
        """The stored, not rejected event whose preferred origin shares most of the picks ``ids`` (ties:
        the smaller id), other than those in ``skip``: (id, picks shared, its pick count)."""
        if not ids:
            return None
        marks = ",".join("?" * len(ids))
        rows = db.execute(
            "SELECT e.id, count(*) AS shared, (SELECT count(*) FROM arrivals x WHERE x.origin_id = e.preferred_origin_id) "
            "AS n FROM events e JOIN arrivals a ON a.origin_id = e.preferred_origin_id "
            f"WHERE e.status != 'rejected' AND a.pick_id IN ({marks}) GROUP BY e.id ORDER BY shared DESC, e.id", ids
        ).fetchall()
        return next(((r["id"], r["shared"], r["n"]) for r in rows if r["id"] not in skip), None)

    def _add_version(self, db: Connection, event_id: str, origin: Origin, arrivals: list[Arrival],
                     magnitude: Magnitude | None, now: float) -> None:
        """Give a stored event its next version: a new preferred origin (the old ones stay)."""
        version = db.execute("SELECT max(version) FROM origins WHERE event_id=?", (event_id,)).fetchone()[0] + 1
        oid = origin_id(event_id, version)
        self._write_origin(db, event_id, oid, version, now, origin, arrivals, magnitude)
        db.execute("UPDATE events SET time=?, preferred_origin_id=?, version=?, status='preliminary', updated=? "
                   "WHERE id=?", (origin.time, oid, version, now, event_id))

    @staticmethod
    def _check_picks_stored(db: Connection, arrivals: list[Arrival]) -> None:
        """Arrivals refer to their picks by the id the pick carries (never by time): every one must
        have an id and be stored; ``ValueError`` naming the first that is not."""
        for a in arrivals:
            if not a.pick_id or db.execute("SELECT 1 FROM picks WHERE id=?", (a.pick_id,)).fetchone() is None:
                p = a.pick
                why = "has no id (associate stored picks)" if not a.pick_id else "is not in the catalog"
                raise ValueError(f"arrival's pick {p.station.id} {p.phase} {p.time} {why}")

    def _insert_event(self, db: Connection, event: Event) -> Event | None:
        arrivals = list(event.arrivals)
        self._check_picks_stored(db, arrivals)
        ids = sorted({a.pick_id for a in arrivals})
        event_id = f"{ID_PREFIX}/event/{digest(*ids)}"
        if db.execute("SELECT 1 FROM events WHERE id=?", (event_id,)).fetchone():
            return None
        marks = ",".join("?" * len(ids))
        if ids and 2 * db.execute(  # (only with ids: PostgreSQL refuses an empty IN ())
                "SELECT count(DISTINCT a.pick_id) FROM events e JOIN arrivals a ON a.origin_id = "
                f"e.preferred_origin_id WHERE e.status != 'rejected' AND a.pick_id IN ({marks})",
                ids).fetchone()[0] >= len(ids):
            return None
        return self._create_event(db, event_id, event, arrivals)

    def _create_event(self, db: Connection, event_id: str, event: Event, arrivals: list[Arrival]) -> Event:
        """Store a new event (version 1) under ``event_id``."""
        now = self.clock()
        oid = origin_id(event_id, 1)
        db.execute("INSERT INTO events (id, time, preferred_origin_id, version, status, created, updated) "
                   "VALUES (?,?,?,?,?,?,?)", (event_id, event.origin.time, oid, 1, "preliminary", now, now))
        self._write_origin(db, event_id, oid, 1, now, event.origin, arrivals, event.magnitude)
        return replace(event, arrivals=tuple(arrivals), id=event_id, version=1, status="preliminary", updated=now)

    def _write_origin(self, db: Connection, event_id: str, oid: str, version: int, created: float,
                      o: Origin, arrivals: list[Arrival], magnitude: Magnitude | None) -> None:
        """One origin of an event (version ``version``), its arrivals and its magnitude."""
        uncertainty = astuple(o.uncertainty) if o.uncertainty is not None else (None,) * len(UNCERTAINTY_COLUMNS)
        columns = ("id", "event_id", "version", "created", "time", "latitude", "longitude", "depth_km", "rms",
                   "method") + UNCERTAINTY_COLUMNS
        db.execute(f"INSERT INTO origins ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})",
                   (oid, event_id, version, created, o.time, o.latitude, o.longitude, o.depth_km, o.rms,
                    o.method) + uncertainty)
        db.execute_many(
            "INSERT INTO arrivals VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            [(oid, a.pick_id, a.pick.phase, a.residual, a.distance_km, a.azimuth) for a in arrivals],
        )
        if magnitude is not None:
            self._write_magnitude(db, oid, magnitude)

    def set_magnitude(self, event_id: str, magnitude: Magnitude) -> None:
        """Attach (or replace) the magnitude of a stored event's preferred origin."""
        with self._transaction() as db:
            row = db.execute("SELECT preferred_origin_id FROM events WHERE id=?", (event_id,)).fetchone()
            if row is None:
                raise UserError(f"{self.path}: no event {event_id}")
            self._write_magnitude(db, row[0], magnitude)
            db.execute("UPDATE events SET updated=? WHERE id=?", (self.clock(), event_id))

    @staticmethod
    def _write_magnitude(db: Connection, oid: str, m: Magnitude) -> None:
        mag_id = magnitude_id(oid, m.type)
        db.execute("DELETE FROM station_magnitudes WHERE magnitude_id IN "
                   "(SELECT id FROM magnitudes WHERE origin_id=?)", (oid,))
        db.execute("DELETE FROM magnitudes WHERE origin_id=?", (oid,))
        db.execute("INSERT INTO magnitudes VALUES (?,?,?,?,?,?,?,?)",
                   (mag_id, oid, m.type, m.value, m.uncertainty, m.station_count, m.method, m.reason))
        db.execute_many(
            "INSERT INTO station_magnitudes VALUES (?,?,?,?,?,?,?,?)",
            [(mag_id, s.station.network, s.station.station, s.station.location, s.station.channel_prefix,
              s.value, s.amplitude_m, s.distance_km) for s in m.station_magnitudes],
        )

    def events(self, start: float | None = None, end: float | None = None, *,
               updated_after: float | None = None) -> list[Event]:
        """Events with origin time in ``[start, end)`` (either bound optional) and, with ``updated_after``,
        last changed at or after that wall-clock time; by time then id. Rejected events are included
        (``Event.status``)."""
        where, args = _where([("time >= ?", start), ("time < ?", end), ("updated >= ?", updated_after)])
        with self._reading():
            rows = self._db.execute(f"SELECT * FROM events{where} ORDER BY time, id", args).fetchall()
            return [self._read_event(r) for r in rows]

    def find_events(self, query: EventQuery) -> list[Event]:
        """The events ``query`` selects, in its order (catalog/query.py: SQL selects and pages; only the
        page's events are read in full)."""
        sql, args = query.sql()
        with self._reading():
            rows = [(r[0], r[1], r[2]) for r in self._db.execute(sql, args)]
            return [self._read_event(self._db.execute("SELECT * FROM events WHERE id=?", (i,)).fetchone())
                    for i in query.select(rows)]

    def latest_events(self, limit: int) -> list[Event]:
        """The ``limit`` latest events (by origin time), newest first."""
        with self._reading():
            rows = self._db.execute("SELECT * FROM events ORDER BY time DESC, id DESC LIMIT ?", (limit,)).fetchall()
            return [self._read_event(r) for r in rows]

    def event(self, event_id: str) -> Event:
        """One event by its resource id or the hash at its end; UserError when unknown or ambiguous."""
        with self._reading():
            return self._read_event(self._event_row(event_id))

    def _event_row(self, event_id: str):
        rows = self._db.execute("SELECT * FROM events WHERE id = ? OR id LIKE ?",
                                (event_id, f"%/{event_id}%")).fetchall()
        exact = [r for r in rows if r["id"] == event_id]
        found = exact or rows
        if len(found) != 1:
            what = "no event" if not found else f"{len(found)} events match"
            raise UserError(f"{self.path}: {what} {event_id!r}")
        return found[0]

    def event_versions(self, event_id: str) -> list[Event]:
        """Every version of an event, oldest first: each with that version's origin, arrivals and
        magnitude, ``version``, and ``updated`` = the wall-clock time that origin was created (the
        last is the event as :meth:`event` reads it, with its status and last update time)."""
        with self._reading():
            row = self._event_row(event_id)
            origins = self._db.execute("SELECT * FROM origins WHERE event_id=? ORDER BY version",
                                       (row["id"],)).fetchall()
            older = [Event(*self._read_origin(o), id=row["id"], version=o["version"], updated=o["created"])
                     for o in origins if o["id"] != row["preferred_origin_id"]]
            return older + [self._read_event(row)]

    def associated_pick_ids(self, start: float | None = None) -> set[str]:
        """Ids of picks used by a stored, not rejected event's preferred origin (with pick time >=
        ``start`` if given)."""
        where, args = _where([("p.time >= ?", start)])
        with self._reading():
            rows = self._db.execute(
                "SELECT a.pick_id FROM events e JOIN arrivals a ON a.origin_id = e.preferred_origin_id "
                f"JOIN picks p ON p.id = a.pick_id{where or ' WHERE TRUE'} AND e.status != 'rejected'", args
            ).fetchall()
        return {r[0] for r in rows}

    def _read_event(self, row) -> Event:
        o = self._db.execute("SELECT * FROM origins WHERE id=?", (row["preferred_origin_id"],)).fetchone()
        return Event(*self._read_origin(o), id=row["id"], version=row["version"], status=row["status"],
                     updated=row["updated"])

    def _read_origin(self, o) -> tuple[Origin, tuple[Arrival, ...], Magnitude | None]:
        """An origin row's origin (with its uncertainty), arrivals and magnitude."""
        db = self._db
        uncertainty = None
        if o["confidence_level"] is not None:
            uncertainty = OriginUncertainty(*(o[c] for c in UNCERTAINTY_COLUMNS))
        origin = Origin(o["time"], o["latitude"], o["longitude"], o["depth_km"], o["rms"], o["method"], uncertainty)
        arrivals = tuple(
            Arrival(_pick_from_row(r), r["residual"], r["distance_km"], r["azimuth"])
            for r in db.execute(
                "SELECT p.*, a.residual, a.distance_km, a.azimuth FROM arrivals a JOIN picks p ON p.id = a.pick_id "
                "WHERE a.origin_id=? ORDER BY p.time, p.id", (o["id"],))
        )
        m = db.execute("SELECT * FROM magnitudes WHERE origin_id=?", (o["id"],)).fetchone()
        magnitude = None
        if m is not None:
            smags = tuple(
                StationMagnitude(_key(r), r["value"], r["amplitude_m"], r["distance_km"])
                for r in db.execute("SELECT * FROM station_magnitudes WHERE magnitude_id=? "
                                    "ORDER BY network, station, location", (m["id"],))
            )
            magnitude = Magnitude(m["type"], m["value"], m["uncertainty"], m["station_count"], m["method"],
                                  m["reason"], smags)
        return origin, arrivals, magnitude


def _pick_from_row(r) -> Pick:
    return Pick(_key(r), r["phase"], r["time"], r["probability"], r["snr"], r["amplitude"], r["probability_std"],
                r["time_uncertainty"], id=r["id"])


_SET_STATE = "INSERT INTO state VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


def _real(value: float | None) -> float | None:
    return None if value is None else float(value)


class _Transaction:
    """``with``-block holding the catalog lock around BEGIN ... COMMIT/ROLLBACK; an operational
    failure anywhere (also at COMMIT, e.g. a full disk or a dropped server connection) rolls back
    and raises ``CatalogWriteError``."""

    def __init__(self, db: Connection, lock: threading.RLock, path: Path | str):
        self._db, self._lock, self._path = db, lock, path

    def __enter__(self) -> Connection:
        self._lock.acquire()
        try:
            self._db.begin()
        except self._db.operational as exc:
            self._lock.release()
            raise self._error(exc) from exc
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    self._db.commit()
                    return
                except self._db.operational as failed:
                    exc = failed
            self._db.rollback()
        finally:
            self._lock.release()
        if isinstance(exc, self._db.operational):
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> CatalogWriteError:
        return CatalogWriteError(f"{self._path}: cannot write the catalog ({one_line(exc)})")
