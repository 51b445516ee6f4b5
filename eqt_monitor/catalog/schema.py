"""The catalog's tables (SQLite), versioned in ``PRAGMA user_version``: a file with a newer
version is refused, an empty one is created at this version; an older one is brought up to it by
the ``MIGRATIONS`` (one list of statements per version step, run in one transaction with foreign
key enforcement off, checked with ``PRAGMA foreign_key_check`` before it commits).

Version 3 keeps an event's history: every origin the catalog ever gave an event stays, with its
``version`` (1 at first commit, +1 each time late picks changed the association) and the wall-clock
time it was ``created``; the event points at its ``preferred_origin_id`` (the latest version) and
records its ``status`` ("preliminary" or "rejected") and the wall-clock times it was ``created``
and last ``updated`` (NULL for events stored before version 3: the catalog did not record them).
Magnitudes belong to an origin; the event's magnitude is its preferred origin's. An origin's
uncertainty columns are NULL when the locator gave none (``confidence_level`` NULL).
"""

SCHEMA_VERSION = 4

_EVENTS = """CREATE TABLE {name} (
    id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    preferred_origin_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    created DOUBLE PRECISION, updated DOUBLE PRECISION
)"""
_ORIGINS = """CREATE TABLE {name} (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events(id),
    version INTEGER NOT NULL, created DOUBLE PRECISION,
    time REAL NOT NULL, latitude REAL NOT NULL, longitude REAL NOT NULL, depth_km REAL NOT NULL,
    rms REAL, method TEXT NOT NULL,
    confidence_level DOUBLE PRECISION,
    horizontal_uncertainty_km DOUBLE PRECISION, min_horizontal_uncertainty_km DOUBLE PRECISION,
    azimuth_max_horizontal DOUBLE PRECISION, depth_uncertainty_km DOUBLE PRECISION,
    time_uncertainty_s DOUBLE PRECISION, azimuthal_gap DOUBLE PRECISION,
    used_phase_count INTEGER, used_station_count INTEGER, minimum_distance_km DOUBLE PRECISION,
    UNIQUE (event_id, version)
)"""
_MAGNITUDES = """CREATE TABLE {name} (
    id TEXT PRIMARY KEY,
    origin_id TEXT NOT NULL UNIQUE REFERENCES origins(id),
    type TEXT NOT NULL, value REAL, uncertainty REAL, station_count INTEGER NOT NULL,
    method TEXT NOT NULL, reason TEXT
)"""
_EVENT_INDEXES = ["CREATE INDEX events_time ON events(time)", "CREATE INDEX events_updated ON events(updated)"]
_ORIGIN_INDEXES = ["CREATE INDEX origins_event ON origins(event_id)"]

_UNCERTAINTY_NULLS = ", ".join(["NULL"] * 10)

# Version 4: preliminary picks (``picks: early``). Each keeps its QuakeML evaluationStatus:
# "preliminary" when written, then "final" (``final_pick_id`` names the final pick that replaced it)
# or "rejected" (retracted), with the wall-clock times it was created and resolved.
_EARLY_PICKS = """CREATE TABLE early_picks (
    id TEXT PRIMARY KEY,
    network TEXT NOT NULL, station TEXT NOT NULL, location TEXT NOT NULL, channel_prefix TEXT NOT NULL,
    phase TEXT NOT NULL, time DOUBLE PRECISION NOT NULL, probability DOUBLE PRECISION NOT NULL,
    model TEXT NOT NULL, weights_sha256 TEXT NOT NULL,
    status TEXT NOT NULL, final_pick_id TEXT,
    created DOUBLE PRECISION NOT NULL, resolved DOUBLE PRECISION
)"""
_EARLY_PICK_INDEXES = ["CREATE INDEX early_picks_time ON early_picks(time)"]

MIGRATIONS: dict[int, list[str]] = {  # from version k to k + 1
    1: ["ALTER TABLE picks ADD COLUMN probability_std REAL",  # Monte-Carlo dropout (model.mc_dropout)
        "ALTER TABLE picks ADD COLUMN time_uncertainty REAL",
        "ALTER TABLE detections ADD COLUMN probability_std REAL"],
    2: [  # event history: SQLite cannot drop the UNIQUE(event_id) of origins/magnitudes, so rebuild them
        _EVENTS.format(name="events_v3"),
        "INSERT INTO events_v3 SELECT e.id, e.time, o.id, 1, 'preliminary', NULL, NULL "
        "FROM events e JOIN origins o ON o.event_id = e.id",
        _ORIGINS.format(name="origins_v3"),
        "INSERT INTO origins_v3 SELECT id, event_id, 1, NULL, time, latitude, longitude, depth_km, rms, method, "
        f"{_UNCERTAINTY_NULLS} FROM origins",
        _MAGNITUDES.format(name="magnitudes_v3"),
        "INSERT INTO magnitudes_v3 SELECT m.id, o.id, m.type, m.value, m.uncertainty, m.station_count, m.method, "
        "m.reason FROM magnitudes m JOIN origins o ON o.event_id = m.event_id",
        "DROP TABLE magnitudes", "DROP TABLE origins", "DROP TABLE events",
        "ALTER TABLE events_v3 RENAME TO events",
        "ALTER TABLE origins_v3 RENAME TO origins",
        "ALTER TABLE magnitudes_v3 RENAME TO magnitudes",
        *_EVENT_INDEXES, *_ORIGIN_INDEXES,
    ],
    3: [_EARLY_PICKS, *_EARLY_PICK_INDEXES],
}

_TABLES = """
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
{events};
{event_indexes};
{origins};
{origin_indexes};
CREATE TABLE arrivals (
    origin_id TEXT NOT NULL REFERENCES origins(id),
    pick_id TEXT NOT NULL REFERENCES picks(id),
    phase TEXT NOT NULL, residual REAL NOT NULL, distance_km REAL NOT NULL, azimuth REAL,
    PRIMARY KEY (origin_id, pick_id)
);
CREATE INDEX arrivals_pick ON arrivals(pick_id);
{magnitudes};
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
{early_picks};
{early_pick_indexes};
"""

SCHEMA = _TABLES.format(events=_EVENTS.format(name="events"), event_indexes=";\n".join(_EVENT_INDEXES),
                        origins=_ORIGINS.format(name="origins"), origin_indexes=";\n".join(_ORIGIN_INDEXES),
                        magnitudes=_MAGNITUDES.format(name="magnitudes"), early_picks=_EARLY_PICKS,
                        early_pick_indexes=";\n".join(_EARLY_PICK_INDEXES))
