"""What the status page shows, gathered at request time: per-station figures read from the metrics
registry (the very numbers ``/metrics`` exposes), the last picks and events from the catalog, a
lon/lat map of stations and epicentres, and the model with its thresholds. Rendering is
``live/templates/status.html``'s job (``live/web.py``); this module only collects."""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import MonitorConfig
from eqt_monitor.live import metrics
from eqt_monitor.records import StationKey

RECENT = 20  # picks and events listed
MAP_W, MAP_H, MAP_PAD = 640, 420, 30  # SVG pixels


@dataclass(frozen=True)
class StationRow:
    """One station's line: state, data latency and last data time (s, POSIX), last pick, quality counters,
    and the scheduled quality numbers (None before the first run): the noisiest channel's 0.1-1 s PSD (dB),
    clipped samples and flat channels."""

    id: str
    state: str  # "ok", "silent" or "no data"
    latency_s: float | None
    last_data: float | None
    last_pick: float | None
    buffer_fill: float | None
    records: float
    samples: float
    gaps: float
    overlaps: float
    data_lost_s: float
    noise_db: float | None = None
    clipped: float | None = None
    flat_channels: float | None = None


@dataclass(frozen=True)
class MapPoint:
    """A marker on the map: SVG position, label, what it is (``station-<state>`` or ``event``), size."""

    x: float
    y: float
    label: str
    kind: str
    r: float = 5.0


@dataclass(frozen=True)
class MapView:
    """The inline SVG map: its size, markers and the lon/lat it spans."""

    width: int
    height: int
    points: list[MapPoint]
    lon_range: tuple[float, float]
    lat_range: tuple[float, float]


@dataclass(frozen=True)
class StatusPage:
    """Everything the template renders."""

    generated: float
    stations: list[StationRow]
    picks: list = field(default_factory=list)  # records.Pick, newest first
    events: list = field(default_factory=list)  # records.Event, newest first
    totals: list[tuple[str, float]] = field(default_factory=list)
    errors: list[tuple[str, float]] = field(default_factory=list)
    model: list[tuple[str, str]] = field(default_factory=list)
    map: MapView | None = None


def magnitude(event) -> float | None:
    """An event's network magnitude value, None when it has none."""
    return event.magnitude.value if event.magnitude is not None else None


def registry_samples() -> tuple[float, dict[str, dict[tuple, float]]]:
    """The registry collected now, as ``/metrics`` does: ``(time, {sample name: {labels: value}})``."""
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    now = time.time()
    for family in metrics.REGISTRY.collect():
        for s in family.samples:
            samples[s.name][tuple(sorted(s.labels.items()))] = s.value
    return now, samples


def _per_station(samples: dict[str, dict[tuple, float]], name: str) -> dict[str, float]:
    return {dict(labels)["station"]: v for labels, v in samples.get(name, {}).items() if "station" in dict(labels)}


def _sum(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    return sum(v for k, v in samples.get(name, {}).items() if all(dict(k).get(a) == b for a, b in labels.items()))


def _per_station_agg(samples: dict[str, dict[tuple, float]], name: str, agg, **labels: str) -> dict[str, float]:
    """``station -> agg(values)`` over a per-channel family's series (with the given labels)."""
    found: dict[str, list[float]] = defaultdict(list)
    for key, value in samples.get(name, {}).items():
        d = dict(key)
        if "station" in d and all(d.get(a) == b for a, b in labels.items()):
            found[d["station"]].append(value)
    return {station: agg(values) for station, values in found.items()}


def station_rows(keys: list[StationKey], samples: dict[str, dict[tuple, float]], now: float,
                 last_picks: dict[str, float]) -> list[StationRow]:
    """One row per configured station from the registry's per-station series and the catalog's last picks."""
    series = {name: _per_station(samples, name) for name in (
        "eqt_monitor_data_latency_seconds", "eqt_monitor_station_silent", "eqt_monitor_buffer_fill_ratio",
        "eqt_monitor_records_received_total", "eqt_monitor_samples_received_total", "eqt_monitor_gaps_total",
        "eqt_monitor_overlaps_total", "eqt_monitor_data_lost_seconds_total")}
    noise = _per_station_agg(samples, "eqt_monitor_noise_psd_decibels", max, band="0.1-1s")
    clipped = _per_station_agg(samples, "eqt_monitor_clipped_samples", sum)
    flat = _per_station_agg(samples, "eqt_monitor_channel_flat", sum)
    rows = []
    for key in sorted(keys, key=str):
        sid = key.id
        latency = series["eqt_monitor_data_latency_seconds"].get(sid)
        silent = series["eqt_monitor_station_silent"].get(sid) == 1.0
        state = "silent" if silent else "no data" if latency is None else "ok"
        rows.append(StationRow(
            id=sid, state=state, latency_s=latency, last_data=None if latency is None else now - latency,
            last_pick=last_picks.get(sid), buffer_fill=series["eqt_monitor_buffer_fill_ratio"].get(sid),
            records=series["eqt_monitor_records_received_total"].get(sid, 0.0),
            samples=series["eqt_monitor_samples_received_total"].get(sid, 0.0),
            gaps=series["eqt_monitor_gaps_total"].get(sid, 0.0),
            overlaps=series["eqt_monitor_overlaps_total"].get(sid, 0.0),
            data_lost_s=series["eqt_monitor_data_lost_seconds_total"].get(sid, 0.0),
            noise_db=noise.get(sid), clipped=clipped.get(sid), flat_channels=flat.get(sid)))
    return rows


def model_rows(config: MonitorConfig, samples: dict[str, dict[tuple, float]]) -> list[tuple[str, str]]:
    """The model in use (the registry's model info) and the thresholds and settings it picks with."""
    info = dict(next(iter(samples.get("eqt_monitor_model_info", {})), ()))
    m = config.model
    return [("name", info.get("name", m.name)), ("weights sha256", info.get("weights_sha256", "—")[:16]),
            ("backend", info.get("backend", m.backend)), ("weights", str(m.weights or "registry")),
            ("detection threshold", f"{m.detection_threshold:g}"), ("P threshold", f"{m.p_threshold:g}"),
            ("S threshold", f"{m.s_threshold:g}"), ("window step", f"{m.step} samples"),
            ("batch size", str(m.batch_size)), ("MC dropout", str(m.mc_dropout) if m.mc_dropout else "off")]


def map_view(config: MonitorConfig, rows: list[StationRow], events: list) -> MapView | None:
    """Stations (coloured by state) and epicentres on an equirectangular lon/lat frame; None without coordinates."""
    state = {r.id: r.state for r in rows}
    places = [(s.longitude, s.latitude, s.key.station, f"station-{state.get(s.key.id, 'no data').replace(' ', '-')}",
               4.0) for s in config.stations if s.latitude is not None and s.longitude is not None]
    places += [(e.origin.longitude, e.origin.latitude, "", "event",
                3.0 + 1.5 * max(0.0, magnitude(e) or 0.0)) for e in events]
    if not places:
        return None
    lons, lats = [p[0] for p in places], [p[1] for p in places]
    lon0, lon1, lat0, lat1 = min(lons), max(lons), min(lats), max(lats)
    squash = math.cos(math.radians((lat0 + lat1) / 2))
    span_x, span_y = max((lon1 - lon0) * squash, 0.05), max(lat1 - lat0, 0.05)
    scale = min((MAP_W - 2 * MAP_PAD) / span_x, (MAP_H - 2 * MAP_PAD) / span_y)
    cx, cy = (lon0 + lon1) / 2, (lat0 + lat1) / 2
    points = [MapPoint(x=MAP_W / 2 + (lon - cx) * squash * scale, y=MAP_H / 2 - (lat - cy) * scale, label=label,
                       kind=kind, r=r) for lon, lat, label, kind, r in places]
    return MapView(MAP_W, MAP_H, points, (lon0, lon1), (lat0, lat1))


def gather(config: MonitorConfig, catalog: Catalog, keys: list[StationKey], recent: int = RECENT) -> StatusPage:
    """The page as of now for the daemon's configured stations ``keys``."""
    now, samples = registry_samples()
    rows = station_rows(keys, samples, now, catalog.last_pick_times())
    events = catalog.latest_events(recent)
    totals = [("P picks", _sum(samples, "eqt_monitor_picks_total", phase="P")),
              ("S picks", _sum(samples, "eqt_monitor_picks_total", phase="S")),
              ("detections", _sum(samples, "eqt_monitor_detections_total")),
              ("events", _sum(samples, "eqt_monitor_events_total")),
              ("windows predicted", _sum(samples, "eqt_monitor_windows_predicted_total")),
              ("catalog writable", _sum(samples, "eqt_monitor_catalog_writable")),
              ("held in memory", _sum(samples, "eqt_monitor_catalog_held_items")),
              ("association lag s", _sum(samples, "eqt_monitor_association_lag_seconds"))]
    errors = sorted((dict(k).get("kind", ""), v) for k, v in samples.get("eqt_monitor_errors_total", {}).items())
    return StatusPage(generated=now, stations=rows, picks=catalog.latest_picks(recent), events=events,
                      totals=totals, errors=errors, model=model_rows(config, samples),
                      map=map_view(config, rows, events))
