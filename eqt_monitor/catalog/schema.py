"""The catalog's tables (SQLite), versioned in ``PRAGMA user_version``: a file with a newer
version is refused, an empty one is created at this version; an older one is brought up to it by
the ``MIGRATIONS`` (one list of statements per version step, run in one transaction)."""

SCHEMA_VERSION = 2

MIGRATIONS: dict[int, list[str]] = {  # from version k to k + 1
    1: ["ALTER TABLE picks ADD COLUMN probability_std REAL",  # Monte-Carlo dropout (model.mc_dropout)
        "ALTER TABLE picks ADD COLUMN time_uncertainty REAL",
        "ALTER TABLE detections ADD COLUMN probability_std REAL"],
}

SCHEMA = """
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
