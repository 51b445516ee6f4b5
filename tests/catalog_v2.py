"""A catalog file as eqt-monitor wrote it at schema version 2 (before event history): its DDL and
the statements its ``Catalog.add_picks``/``add_events``/``set_magnitude`` ran, for migration tests."""
from __future__ import annotations

import sqlite3
from pathlib import Path

V2_SCHEMA = """
CREATE TABLE picks (
    id TEXT PRIMARY KEY,
    network TEXT NOT NULL, station TEXT NOT NULL, location TEXT NOT NULL, channel_prefix TEXT NOT NULL,
    phase TEXT NOT NULL, time REAL NOT NULL, time_cs INTEGER NOT NULL,
    probability REAL NOT NULL, snr REAL, amplitude REAL,
    model TEXT NOT NULL, weights_sha256 TEXT NOT NULL,
    probability_std REAL, time_uncertainty REAL
);
CREATE INDEX picks_time ON picks(time);
CREATE INDEX picks_lookup ON picks(network, station, location, phase, time_cs);
CREATE TABLE detections (
    id TEXT PRIMARY KEY,
    network TEXT NOT NULL, station TEXT NOT NULL, location TEXT NOT NULL, channel_prefix TEXT NOT NULL,
    start REAL NOT NULL, "end" REAL NOT NULL, probability REAL NOT NULL,
    model TEXT NOT NULL, weights_sha256 TEXT NOT NULL,
    probability_std REAL
);
CREATE INDEX detections_start ON detections(start);
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    time REAL NOT NULL
);
CREATE INDEX events_time ON events(time);
CREATE TABLE origins (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE REFERENCES events(id),
    time REAL NOT NULL, latitude REAL NOT NULL, longitude REAL NOT NULL, depth_km REAL NOT NULL,
    rms REAL, method TEXT NOT NULL
);
CREATE TABLE arrivals (
    origin_id TEXT NOT NULL REFERENCES origins(id),
    pick_id TEXT NOT NULL REFERENCES picks(id),
    phase TEXT NOT NULL, residual REAL NOT NULL, distance_km REAL NOT NULL, azimuth REAL,
    PRIMARY KEY (origin_id, pick_id)
);
CREATE INDEX arrivals_pick ON arrivals(pick_id);
CREATE TABLE magnitudes (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE REFERENCES events(id),
    type TEXT NOT NULL, value REAL, uncertainty REAL, station_count INTEGER NOT NULL,
    method TEXT NOT NULL, reason TEXT
);
CREATE TABLE station_magnitudes (
    magnitude_id TEXT NOT NULL REFERENCES magnitudes(id),
    network TEXT NOT NULL, station TEXT NOT NULL, location TEXT NOT NULL, channel_prefix TEXT NOT NULL,
    value REAL NOT NULL, amplitude_m REAL NOT NULL, distance_km REAL NOT NULL,
    PRIMARY KEY (magnitude_id, network, station, location)
);
CREATE TABLE stations (
    id TEXT PRIMARY KEY,
    latitude REAL NOT NULL, longitude REAL NOT NULL, elevation_m REAL NOT NULL
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL, source TEXT NOT NULL, model TEXT NOT NULL, weights_sha256 TEXT NOT NULL,
    settings TEXT NOT NULL
);
CREATE TABLE state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def write_v2_catalog(path: Path, picks: list[tuple], events: list[dict]) -> None:
    """A version-2 file holding ``picks`` (rows of the v2 picks table) and ``events`` (dicts with
    ``hash``, ``origin`` (time, lat, lon, depth_km, rms, method), ``arrivals`` (pick id, phase,
    residual, distance_km, azimuth) and optionally ``magnitude`` (type, value, uncertainty,
    station_count, method, reason) and ``station_magnitudes`` (rows without the magnitude id)),
    written with the v2 code's statements."""
    db = sqlite3.connect(path)
    db.executescript(V2_SCHEMA + "PRAGMA user_version=2;")
    db.execute("PRAGMA foreign_keys=ON")
    db.executemany("INSERT OR IGNORE INTO picks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", picks)
    for e in events:
        event_id, origin_id = f"smi:eqt-monitor/event/{e['hash']}", f"smi:eqt-monitor/origin/{e['hash']}"
        db.execute("INSERT INTO events VALUES (?,?)", (event_id, e["origin"][0]))
        db.execute("INSERT INTO origins VALUES (?,?,?,?,?,?,?,?)", (origin_id, event_id, *e["origin"]))
        db.executemany("INSERT OR IGNORE INTO arrivals VALUES (?,?,?,?,?,?)",
                       [(origin_id, *a) for a in e["arrivals"]])
        if "magnitude" in e:
            mag_id = f"smi:eqt-monitor/magnitude/{e['hash']}/{e['magnitude'][0]}"
            db.execute("INSERT INTO magnitudes VALUES (?,?,?,?,?,?,?,?)", (mag_id, event_id, *e["magnitude"]))
            db.executemany("INSERT INTO station_magnitudes VALUES (?,?,?,?,?,?,?,?)",
                           [(mag_id, *s) for s in e.get("station_magnitudes", ())])
    db.commit()
    db.close()
