"""The query parameters of fdsnws-event 1.2 (``/fdsnws/event/1/query``): one table that the
parser, the WADL and the documentation page are all made from, and their parsing into values."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from obspy import UTCDateTime

ORDERBY = ("time", "time-asc", "magnitude", "magnitude-asc")


class BadRequest(ValueError):
    """A query the service refuses (an unknown or repeated parameter, an unreadable or out-of-range value)."""


@dataclass(frozen=True)
class Param:
    """One query parameter: its name, short alias, type (``time``, ``float``, ``int``, ``bool``, ``str``),
    default (as the spec writes it), allowed values or range, and a one-line description."""

    name: str
    kind: str
    doc: str
    alias: str | None = None
    default: str | None = None
    options: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    @property
    def xsd_type(self) -> str:
        """The XML Schema type the WADL gives it."""
        return {"time": "xs:dateTime", "float": "xs:double", "int": "xs:int", "bool": "xs:boolean",
                "str": "xs:string"}[self.kind]


PARAMETERS: tuple[Param, ...] = (
    Param("starttime", "time", "Limit to events on or after the specified start time (UTC).", "start"),
    Param("endtime", "time", "Limit to events on or before the specified end time (UTC).", "end"),
    Param("minlatitude", "float", "Southern boundary (degrees).", "minlat", "-90.0", low=-90, high=90),
    Param("maxlatitude", "float", "Northern boundary (degrees).", "maxlat", "90.0", low=-90, high=90),
    Param("minlongitude", "float", "Western boundary (degrees); greater than maxlongitude: the box crosses "
          "the antimeridian.", "minlon", "-180.0", low=-180, high=180),
    Param("maxlongitude", "float", "Eastern boundary (degrees).", "maxlon", "180.0", low=-180, high=180),
    Param("latitude", "float", "Central latitude of a radius search (degrees).", "lat", "0.0", low=-90, high=90),
    Param("longitude", "float", "Central longitude of a radius search (degrees).", "lon", "0.0",
          low=-180, high=180),
    Param("minradius", "float", "Minimum great-circle distance from latitude, longitude (degrees).",
          default="0.0", low=0, high=180),
    Param("maxradius", "float", "Maximum great-circle distance from latitude, longitude (degrees).",
          default="180.0", low=0, high=180),
    Param("mindepth", "float", "Limit to events with depth (km) greater than or equal to this."),
    Param("maxdepth", "float", "Limit to events with depth (km) less than or equal to this."),
    Param("minmagnitude", "float", "Limit to events with a magnitude larger than or equal to this.", "minmag"),
    Param("maxmagnitude", "float", "Limit to events with a magnitude smaller than or equal to this.", "maxmag"),
    Param("magnitudetype", "str", "Magnitude type the limits test, case-insensitive (eqt-monitor makes ML); "
          "only events with such a magnitude are returned.", "magtype"),
    Param("eventtype", "str", "Comma-separated QuakeML event types, * and ? wildcards (eqt-monitor's events "
          "are 'earthquake', or 'not existing' once rejected)."),
    Param("includeallorigins", "bool", "Include all origins of an event, not only the preferred one.",
          default="false"),
    Param("includeallmagnitudes", "bool", "Include all magnitudes of an event, not only the preferred one "
          "(eqt-monitor keeps one).", default="false"),
    Param("includearrivals", "bool", "Include picks and arrivals.", default="false"),
    Param("eventid", "str", "Select one event by its resource id (smi:eqt-monitor/event/HASH) or its hash."),
    Param("limit", "int", "Return at most this many events.", low=1),
    Param("offset", "int", "Return events starting at this position (the first is 1).", default="1", low=1),
    Param("orderby", "str", "Order by origin time or magnitude, descending or ascending (-asc).",
          default="time", options=ORDERBY),
    Param("updatedafter", "time", "Limit to events the catalog changed (a new origin, magnitude or status) at "
          "or after this UTC time."),
    Param("catalog", "str", "Limit to events from this catalog (see /catalogs)."),
    Param("contributor", "str", "Limit to events from this contributor (see /contributors)."),
    Param("format", "str", "QuakeML 1.2 (xml) or the FDSN text format (text).", default="xml",
          options=("xml", "text")),
    Param("nodata", "int", "HTTP status code of an empty result.", default="204", options=("204", "404")),
)
BY_NAME = {p.name: p for p in PARAMETERS} | {p.alias: p for p in PARAMETERS if p.alias}


def _value(param: Param, text: str):
    if param.options and text.lower() not in param.options:
        raise BadRequest(f"{param.name}={text!r}: expected one of {', '.join(param.options)}")
    if param.kind == "time":
        try:
            return UTCDateTime(text).timestamp
        except Exception:
            raise BadRequest(f"{param.name}={text!r}: not a time (e.g. 2020-10-01T00:00:00)") from None
    if param.kind == "bool":
        if text.lower() not in ("true", "false"):
            raise BadRequest(f"{param.name}={text!r}: expected true or false")
        return text.lower() == "true"
    if param.kind in ("int", "float"):
        try:
            value = int(text) if param.kind == "int" else float(text)
        except ValueError:
            raise BadRequest(f"{param.name}={text!r}: not {'an integer' if param.kind == 'int' else 'a number'}") \
                from None
        if value != value or (param.low is not None and value < param.low) or \
                (param.high is not None and value > param.high):
            raise BadRequest(f"{param.name}={text!r}: out of range [{param.low}, {param.high}]")
        return value
    return text.lower() if param.options else text


def parse(args: Mapping[str, Sequence[str]]) -> dict:
    """``{long name: value}`` of a query's parameters (``args``: name -> the values given); times as POSIX
    seconds. ``BadRequest`` for an unknown, repeated or empty parameter, a bad value, or bounds that
    contradict each other (start after end, min above max)."""
    out: dict = {}
    for name, values in args.items():
        param = BY_NAME.get(name)
        if param is None:
            raise BadRequest(f"unknown parameter {name!r}")
        if param.name in out or len(values) != 1:
            raise BadRequest(f"parameter {param.name!r} given more than once")
        if not values[0].strip():
            raise BadRequest(f"parameter {name!r} has no value")
        out[param.name] = _value(param, values[0].strip())
    for low, high in (("starttime", "endtime"), ("minlatitude", "maxlatitude"), ("minradius", "maxradius"),
                      ("mindepth", "maxdepth"), ("minmagnitude", "maxmagnitude")):
        if low in out and high in out and out[low] > out[high]:
            raise BadRequest(f"{low} is greater than {high}")
    return out
