"""Catalog export: QuakeML 1.2 (through ``obspy.core.event``), an events CSV, EQTransformer's picks CSV.

Every output is a function of the catalog's content only (no clock, no random ids), so exporting
an unchanged catalog again gives a byte-identical file. (QuakeML's origin creation times are the
catalog's own record of when it stored each origin.)
"""
from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from obspy import UTCDateTime
from obspy.core import event as qml

from eqt_monitor.catalog.ids import ID_PREFIX, magnitude_id, origin_id
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.records import Arrival, Event, Origin, OriginUncertainty, Pick, StationKey

NAMESPACE = "https://github.com/eqt-monitor/eqt-monitor/xmlns/1.0"  # our QuakeML extras (pick probability, snr)
AGENCY = "eqt-monitor"
KM_PER_DEGREE = 111.19492664455873  # great-circle km per degree on ObsPy's 6371 km sphere
LOCATOR_ID = f"{ID_PREFIX}/method/pyocto-least-squares"

EQT_CSV_COLUMNS = [  # EQTransformer's X_prediction_results.csv (mseed_predictor)
    "file_name", "network", "station", "instrument_type", "station_lat", "station_lon", "station_elv",
    "event_start_time", "event_end_time", "detection_probability", "detection_uncertainty",
    "p_arrival_time", "p_probability", "p_uncertainty", "p_snr",
    "s_arrival_time", "s_probability", "s_uncertainty", "s_snr",
]
UNCERTAINTY_CSV_COLUMNS = [  # the origin's: empty where the locator gave none (depth: also where not resolved)
    "confidence_level", "horizontal_uncertainty_km", "min_horizontal_uncertainty_km", "azimuth_max_horizontal",
    "depth_uncertainty_km", "time_uncertainty_s", "azimuthal_gap", "minimum_distance_km",
]
EVENT_CSV_COLUMNS = [
    "event_id", "origin_time", "latitude", "longitude", "depth_km", "rms_s", "arrivals", "stations",
    "ml", "ml_uncertainty", "ml_stations", "ml_reason", *UNCERTAINTY_CSV_COLUMNS,
]
FORMATS = ("quakeml", "csv", "eqt-csv")


def _authors(catalog: Catalog, events: list[Event]) -> dict[str, str]:
    """``pick id -> "model weights_sha256"`` for every arrival of ``events`` (all their versions)."""
    sources = catalog.pick_sources(a.pick_id for e in events for a in e.arrivals)
    return {pid: f"{model} {sha}" for pid, (model, sha) in sources.items()}


def _waveform_id(station: StationKey) -> qml.WaveformStreamID:
    # EqT reads all three components: the channel is the band and instrument code with a wildcard
    return qml.WaveformStreamID(station.network, station.station, station.location, f"{station.channel_prefix}?")


def _extra(**values) -> dict:
    return {k: {"value": v, "namespace": NAMESPACE} for k, v in values.items() if v is not None}


def to_obspy(catalog: Catalog, start: float | None = None, end: float | None = None,
             agency: str = AGENCY) -> qml.Catalog:
    """The events with origin time in ``[start, end)`` as an ObsPy ``Catalog`` (QuakeML 1.2 content),
    each with every origin it had."""
    span = f"{start if start is not None else ''}-{end if end is not None else ''}"
    return events_to_obspy(catalog, catalog.events(start, end), f"eqt-monitor catalog {span}", span, agency=agency)


def events_to_obspy(catalog: Catalog, events: list[Event], description: str, label: str, *,
                    agency: str = AGENCY, arrivals: bool = True, all_origins: bool = True) -> qml.Catalog:
    """``events`` (read from ``catalog``) as an ObsPy ``Catalog`` whose resource id hashes ``label`` and
    the event ids; ``all_origins=False`` keeps only each event's preferred origin (not its earlier
    versions), ``arrivals=False`` leaves out picks and arrivals (the counts in ``quality`` stay)."""
    histories = [catalog.event_versions(e.id) if all_origins and e.version > 1 else [e] for e in events]
    authors = _authors(catalog, [v for history in histories for v in history])
    digest = hashlib.sha256("|".join([label] + [e.id for e in events]).encode()).hexdigest()[:20]
    out = qml.Catalog(resource_id=qml.ResourceIdentifier(f"{ID_PREFIX}/catalog/{digest}"), description=description)
    out.creation_info = qml.CreationInfo(agency_id=agency)
    for history in histories:
        event = _event(history, authors, agency)
        if not arrivals:
            event.picks = []
            for origin in event.origins:
                origin.arrivals = []
        out.events.append(event)
    return out


def write_quakeml(cat: qml.Catalog, target) -> None:
    """Write ``cat`` as QuakeML 1.2 (with our namespace for pick extras) to a path or binary file."""
    cat.write(target, format="QUAKEML", nsmap={"eqtm": NAMESPACE})


def _event(history: list[Event], authors: dict[str, str], agency: str) -> qml.Event:
    """An event with every origin it had (``history``: its versions, oldest first); the preferred
    origin is the latest. A rejected event is "not existing", its preferred origin "rejected"."""
    event = history[-1]
    author = " / ".join(sorted({authors[a.pick_id] for a in event.arrivals}))
    info = qml.CreationInfo(agency_id=agency, author=author)
    picks: dict[str, qml.Pick] = {}
    origins = [_origin(version, picks, authors, agency) for version in history]
    rejected = event.status == "rejected"
    if rejected:
        origins[-1].evaluation_status = "rejected"
    out = qml.Event(resource_id=qml.ResourceIdentifier(event.id),
                    event_type="not existing" if rejected else "earthquake",
                    event_type_certainty="suspected", picks=list(picks.values()), origins=origins,
                    creation_info=info)
    origin = origins[-1]
    out.preferred_origin_id = origin.resource_id
    m = event.magnitude
    if m is not None and m.value is not None:
        mag_id = magnitude_id(origin.resource_id.id, m.type)
        contributions = []
        for s in m.station_magnitudes:
            base = f"{mag_id}/{s.station.id}"
            amp = qml.Amplitude(resource_id=qml.ResourceIdentifier(f"{base}/amplitude"),
                                generic_amplitude=s.amplitude_m, type="AML", unit="m", magnitude_hint=m.type,
                                waveform_id=_waveform_id(s.station), evaluation_mode="automatic")
            smag = qml.StationMagnitude(resource_id=qml.ResourceIdentifier(base), origin_id=origin.resource_id,
                                        mag=round(s.value, 3), station_magnitude_type=m.type,
                                        amplitude_id=amp.resource_id, waveform_id=_waveform_id(s.station),
                                        method_id=qml.ResourceIdentifier(m.method))
            out.amplitudes.append(amp)
            out.station_magnitudes.append(smag)
            contributions.append(qml.StationMagnitudeContribution(station_magnitude_id=smag.resource_id, weight=1.0))
        mag = qml.Magnitude(resource_id=qml.ResourceIdentifier(mag_id), mag=round(m.value, 3),
                            mag_errors=qml.QuantityError(None if m.uncertainty is None else round(m.uncertainty, 3)),
                            magnitude_type=m.type, origin_id=origin.resource_id,
                            method_id=qml.ResourceIdentifier(m.method), station_count=m.station_count,
                            station_magnitude_contributions=contributions, evaluation_mode="automatic",
                            creation_info=qml.CreationInfo(agency_id=agency))
        out.magnitudes.append(mag)
        out.preferred_magnitude_id = mag.resource_id
    elif m is not None:
        out.comments.append(qml.Comment(resource_id=qml.ResourceIdentifier(f"{event.id}/comment/magnitude"),
                                        text=f"no {m.type}: {m.reason}"))
    return out


def _origin(version: Event, picks: dict[str, qml.Pick], authors: dict[str, str], agency: str) -> qml.Origin:
    """The QuakeML origin of one version of an event (its creation info: the version and the time the
    catalog stored it), adding the picks it uses to ``picks``."""
    o = version.origin
    oid = origin_id(version.id, version.version)
    arrivals = []
    for i, a in enumerate(version.arrivals):
        if a.pick_id not in picks:
            picks[a.pick_id] = _pick(a.pick, authors[a.pick_id], agency)
        arrivals.append(_arrival(a, i, oid))
    stations = {a.pick.station for a in version.arrivals}
    author = " / ".join(sorted({authors[a.pick_id] for a in version.arrivals}))
    created = None if version.updated is None else UTCDateTime(version.updated)
    origin = qml.Origin(
        resource_id=qml.ResourceIdentifier(oid), time=UTCDateTime(o.time), latitude=round(o.latitude, 5),
        longitude=round(o.longitude, 5), depth=round(o.depth_km * 1000.0, 1), depth_type="from location",
        method_id=qml.ResourceIdentifier(LOCATOR_ID), evaluation_mode="automatic", arrivals=arrivals,
        quality=qml.OriginQuality(standard_error=None if o.rms is None else round(o.rms, 4),
                                  used_phase_count=len(arrivals), associated_phase_count=len(arrivals),
                                  used_station_count=len(stations), associated_station_count=len(stations)),
        comments=[qml.Comment(resource_id=qml.ResourceIdentifier(f"{oid}/comment/method"), text=o.method)],
        creation_info=qml.CreationInfo(agency_id=agency, author=author, version=str(version.version),
                                       creation_time=created))
    if o.uncertainty is not None:
        _add_uncertainty(origin, o)
    return origin


def _pick(p: Pick, author: str, agency: str) -> qml.Pick:
    pick = qml.Pick(resource_id=qml.ResourceIdentifier(p.id), time=UTCDateTime(p.time),
                    waveform_id=_waveform_id(p.station), phase_hint=p.phase, evaluation_mode="automatic",
                    time_errors=qml.QuantityError(uncertainty=p.time_uncertainty),
                    method_id=qml.ResourceIdentifier(f"{ID_PREFIX}/picker/{author.split()[0]}"),
                    creation_info=qml.CreationInfo(agency_id=agency, author=author))
    pick.extra = _extra(probability=round(p.probability, 4),
                        probability_std=None if p.probability_std is None else round(p.probability_std, 4),
                        snr_db=None if p.snr is None else round(p.snr, 2),
                        amplitude_counts=None if p.amplitude is None else round(p.amplitude, 3))
    return pick


def _arrival(a: Arrival, i: int, oid: str) -> qml.Arrival:
    return qml.Arrival(
        resource_id=qml.ResourceIdentifier(f"{oid}/arrival/{i}"), pick_id=qml.ResourceIdentifier(a.pick_id),
        phase=a.pick.phase, time_residual=round(a.residual, 4), distance=round(a.distance_km / KM_PER_DEGREE, 6),
        azimuth=None if a.azimuth is None else round(a.azimuth, 2))


def _add_uncertainty(origin: qml.Origin, o: Origin) -> None:
    """``o``'s confidence ellipse, errors and geometry on ``origin``: metres for the ellipse and the
    depth, degrees for latitude, longitude and distances, as QuakeML wants."""
    u = o.uncertainty
    level = u.confidence_level
    origin.origin_uncertainty = qml.OriginUncertainty(
        horizontal_uncertainty=round(u.horizontal_km * 1000.0, 1),
        min_horizontal_uncertainty=round(u.min_horizontal_km * 1000.0, 1),
        max_horizontal_uncertainty=round(u.horizontal_km * 1000.0, 1),
        azimuth_max_horizontal_uncertainty=round(u.azimuth_max_horizontal, 1),
        preferred_description="uncertainty ellipse", confidence_level=level)
    origin.latitude_errors = qml.QuantityError(round(u.axis_km(0.0) / KM_PER_DEGREE, 6), confidence_level=level)
    east_degree = KM_PER_DEGREE * math.cos(math.radians(o.latitude))
    origin.longitude_errors = qml.QuantityError(round(u.axis_km(90.0) / east_degree, 6), confidence_level=level)
    if u.depth_km is not None:
        origin.depth_errors = qml.QuantityError(round(u.depth_km * 1000.0, 1), confidence_level=level)
    origin.time_errors = qml.QuantityError(round(u.time_s, 4), confidence_level=level)
    origin.quality.azimuthal_gap = round(u.azimuthal_gap, 2)
    origin.quality.minimum_distance = round(u.minimum_distance_km / KM_PER_DEGREE, 6)


def _uncertainty_columns(u: OriginUncertainty | None) -> list:
    """The events CSV's uncertainty columns (all empty without one)."""
    if u is None:
        return [""] * len(UNCERTAINTY_CSV_COLUMNS)
    return [f"{u.confidence_level:g}", f"{u.horizontal_km:.3f}", f"{u.min_horizontal_km:.3f}",
            f"{u.azimuth_max_horizontal:.1f}", _num(u.depth_km, 3), f"{u.time_s:.3f}", f"{u.azimuthal_gap:.1f}",
            f"{u.minimum_distance_km:.2f}"]


def export_quakeml(catalog: Catalog, path: str | Path, *, start: float | None = None, end: float | None = None,
                   agency: str = AGENCY) -> int:
    """Write the span's events as QuakeML 1.2; returns the number of events."""
    cat = to_obspy(catalog, start, end, agency)
    write_quakeml(cat, str(path))
    return len(cat)


def _iso(t: float | None) -> str:
    return "" if t is None else UTCDateTime(t).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_events_csv(catalog: Catalog, path: str | Path, *, start: float | None = None,
                     end: float | None = None) -> int:
    """One row per event (origin and ML); returns the number of rows."""
    events = catalog.events(start, end)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(EVENT_CSV_COLUMNS)
        for e in events:
            o, m = e.origin, e.magnitude
            w.writerow([e.id, _iso(o.time), f"{o.latitude:.5f}", f"{o.longitude:.5f}", f"{o.depth_km:.2f}",
                        _num(o.rms, 3), len(e.arrivals), len({a.pick.station for a in e.arrivals}),
                        _num(m.value if m else None, 2), _num(m.uncertainty if m else None, 2),
                        m.station_count if m else "", (m.reason or "") if m else "",
                        *_uncertainty_columns(o.uncertainty)])
    return len(events)


def _eqt_time(t: float | None) -> str:
    # EQTransformer writes Python datetimes with str(): "2020-10-01 00:00:47.610000"
    return "" if t is None else str(datetime.fromtimestamp(round(t, 6), tz=timezone.utc).replace(tzinfo=None))


def _best(picks: Iterable[Pick], phase: str, lo: float, hi: float) -> Pick | None:
    inside = [p for p in picks if p.phase == phase and lo <= p.time <= hi]
    return max(inside, key=lambda p: (p.probability, -p.time), default=None)


def write_eqt_csv(catalog: Catalog, path: str | Path, *, start: float | None = None, end: float | None = None) -> int:
    """Detections with their P and S picks in EQTransformer's ``X_prediction_results.csv`` columns.

    A detection's P is the most probable P pick from 1 s before its start to its end, its S the
    most probable S pick within it (EqT's picker allows P slightly ahead of the detection onset).
    The uncertainty columns hold the Monte-Carlo dropout stds (detection: mean std of D over the
    detection; P, S: std at the pick), empty for a deterministic run. Returns the number of rows.
    """
    detections = catalog.detections(start, end)
    coords = catalog.stations()
    by_station: dict[str, list[Pick]] = {}
    if detections:
        lo = min(d.start for d in detections) - 1.0
        hi = max(d.end for d in detections) + 1e-6
        for p in catalog.picks(lo, hi):
            by_station.setdefault(p.station.id, []).append(p)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(EQT_CSV_COLUMNS)
        for d in detections:
            st = d.station
            lat, lon, elev = coords.get(st.id, (None, None, None))
            picks = by_station.get(st.id, [])
            p = _best(picks, "P", d.start - 1.0, d.end)
            s = _best(picks, "S", d.start, d.end)
            w.writerow([st.id, st.network, st.station, st.channel_prefix, _num(lat, 5), _num(lon, 5), _num(elev, 1),
                        _eqt_time(d.start), _eqt_time(d.end), f"{d.probability:.2f}", _num(d.probability_std, 2),
                        _eqt_time(p.time if p else None), _num(p.probability if p else None, 2),
                        _num(p.probability_std if p else None, 2), _num(p.snr if p else None, 1),
                        _eqt_time(s.time if s else None), _num(s.probability if s else None, 2),
                        _num(s.probability_std if s else None, 2),
                        _num(s.snr if s else None, 1)])
    return len(detections)


def export(catalog: Catalog, fmt: str, path: str | Path, *, start: float | None = None,
           end: float | None = None) -> int:
    """Write ``fmt`` (one of :data:`FORMATS`) to ``path``; returns the number of events or rows."""
    writers = {"quakeml": export_quakeml, "csv": write_events_csv, "eqt-csv": write_eqt_csv}
    return writers[fmt](catalog, path, start=start, end=end)
