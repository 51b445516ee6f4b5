"""The FDSN event text format (``format=text``): the spec's pipe-separated columns, one line per
event, then eqt-monitor's origin-quality columns appended after them (a client that reads the
standard columns by position keeps working)."""
from __future__ import annotations

from functools import cache

from obspy import UTCDateTime
from obspy.geodetics import FlinnEngdahl

from eqt_monitor.records import Event

STANDARD_COLUMNS = ("EventID", "Time", "Latitude", "Longitude", "Depth/km", "Author", "Catalog", "Contributor",
                    "ContributorID", "MagType", "Magnitude", "MagAuthor", "EventLocationName", "EventType")
QUALITY_COLUMNS = ("StandardError/s", "TimeUncertainty/s", "HorizontalUncertainty/km",
                   "MinHorizontalUncertainty/km", "MaxHorizontalUncertaintyAzimuth/deg", "DepthUncertainty/km",
                   "ConfidenceLevel/%", "AzimuthalGap/deg", "UsedPhaseCount", "UsedStationCount",
                   "MinimumDistance/km")
HEADER = "#" + "|".join(STANDARD_COLUMNS + QUALITY_COLUMNS)


@cache
def _regions() -> FlinnEngdahl:
    return FlinnEngdahl()


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def event_line(event: Event, *, catalog: str, agency: str) -> str:
    """One event as a text-format line (no newline): origin, magnitude (empty without one), the
    Flinn-Engdahl region, then the origin uncertainty (empty where the locator gave none)."""
    o, m, u = event.origin, event.magnitude, event.origin.uncertainty
    has_mag = m is not None and m.value is not None
    phases = u.used_phase_count if u else len(event.arrivals)
    stations = u.used_station_count if u else len({a.pick.station for a in event.arrivals})
    fields = [
        event.id, UTCDateTime(o.time).strftime("%Y-%m-%dT%H:%M:%S.%f"), f"{o.latitude:.5f}", f"{o.longitude:.5f}",
        f"{o.depth_km:.3f}", agency, catalog, agency, event.short_id, m.type if has_mag else "",
        _num(m.value if has_mag else None, 2), agency if has_mag else "",
        _regions().get_region(o.longitude, o.latitude), "not existing" if event.status == "rejected" else "earthquake",
        _num(o.rms, 4), _num(u and u.time_s, 3), _num(u and u.horizontal_km, 3), _num(u and u.min_horizontal_km, 3),
        _num(u and u.azimuth_max_horizontal, 1), _num(u and u.depth_km, 3), _num(u and u.confidence_level, 1),
        _num(u and u.azimuthal_gap, 1), str(phases), str(stations), _num(u and u.minimum_distance_km, 3),
    ]
    return "|".join(f.replace("|", "/") for f in fields)


def text_document(events: list[Event], *, catalog: str, agency: str) -> str:
    """The whole text response: the header line and one line per event."""
    return "\n".join([HEADER] + [event_line(e, catalog=catalog, agency=agency) for e in events]) + "\n"
