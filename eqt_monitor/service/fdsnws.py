"""The FDSN event web service 1.2 over the catalog, as a Flask blueprint under ``/fdsnws/event/1``.

Routes: ``query`` (QuakeML 1.2 or the text format; selection in the catalog's SQL, see
catalog/query.py), ``version``, ``application.wadl`` (made from service/params.py's table, as is
the documentation page at the root), ``catalogs`` and ``contributors``. Errors are the spec's
plain-text error documents: 400 for a bad request, 413 past ``max_events``, 204 or 404
(``nodata``) for no events, 500 (logged) when the catalog fails. The catalog object may be shared
with the daemon's writer thread: every read holds its lock.
"""
from __future__ import annotations

import io
import logging
from datetime import datetime, timezone
from fnmatch import fnmatch

from flask import Blueprint, Flask, Response, redirect, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from eqt_monitor.catalog.export import AGENCY, events_to_obspy, write_quakeml
from eqt_monitor.catalog.query import EventQuery
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.service.params import PARAMETERS, BadRequest, parse
from eqt_monitor.service.text import QUALITY_COLUMNS, text_document

log = logging.getLogger(__name__)

PREFIX = "/fdsnws/event/1"
VERSION = "1.2.0"  # SpecMajor.SpecMinor.Implementation
CATALOG_NAME = "eqt-monitor"
MAX_EVENTS = 20000  # a larger answer is a 413: page through it with limit and offset
TEXT = "text/plain; charset=utf-8"


def error_document(code: int, detail: str) -> Response:
    """The spec's error document for the current request, with status ``code``."""
    body = (f"Error {code}: {HTTP_STATUS_CODES.get(code, 'Error')}\n\n{detail}\n\n"
            f"Usage details are available from {request.host_url.rstrip('/')}{PREFIX}/\n\n"
            f"Request:\n{request.url}\n\n"
            f"Request Submitted:\n{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')}\n\n"
            f"Service version:\n{VERSION}\n")
    return Response(body, status=code, content_type=TEXT)


EVENT_TYPES = {"earthquake": False, "not existing": True}  # eqt-monitor's QuakeML event types -> rejected


def _admitted(event_types: str | None) -> set[bool]:
    """Which ``Event.status == "rejected"`` values an ``eventtype`` list (``*``/``?`` wildcards) admits."""
    if event_types is None:
        return {False, True}
    patterns = [t.strip().lower() for t in event_types.split(",")]
    return {rejected for kind, rejected in EVENT_TYPES.items() if any(fnmatch(kind, p) for p in patterns)}


def _query(values: dict, max_events: int) -> EventQuery:
    radius = None
    if any(k in values for k in ("latitude", "longitude", "minradius", "maxradius")):
        radius = (values.get("latitude", 0.0), values.get("longitude", 0.0), values.get("minradius", 0.0),
                  values.get("maxradius", 180.0))
    limit = values.get("limit")
    return EventQuery(
        start=values.get("starttime"), end=values.get("endtime"),
        min_latitude=values.get("minlatitude"), max_latitude=values.get("maxlatitude"),
        min_longitude=values.get("minlongitude"), max_longitude=values.get("maxlongitude"), radius=radius,
        min_depth_km=values.get("mindepth"), max_depth_km=values.get("maxdepth"),
        min_magnitude=values.get("minmagnitude"), max_magnitude=values.get("maxmagnitude"),
        magnitude_type=values.get("magnitudetype"), event_id=values.get("eventid"),
        updated_after=values.get("updatedafter"), rejected=_one(_admitted(values.get("eventtype"))),
        order=values.get("orderby", "time"), offset=values.get("offset", 1) - 1,
        limit=max_events + 1 if limit is None or limit > max_events else limit)  # one more: to see a 413


def _one(values: set[bool]) -> bool | None:
    return next(iter(values)) if len(values) == 1 else None


def _selects_nothing(values: dict, agency: str) -> bool:
    """Filters that eqt-monitor's one catalog, one contributor and two event types answer without SQL."""
    return (values.get("catalog", CATALOG_NAME) != CATALOG_NAME or values.get("contributor", agency) != agency
            or not _admitted(values.get("eventtype")))


def create_blueprint(catalog: Catalog, *, agency: str = AGENCY, max_events: int = MAX_EVENTS) -> Blueprint:
    """The service's routes over ``catalog`` (mount it at :data:`PREFIX`)."""
    bp = Blueprint("fdsnws_event", __name__, template_folder="templates")

    @bp.get("/")
    def documentation() -> Response:
        html = render_template("fdsnws-event.html", parameters=PARAMETERS, prefix=PREFIX, version=VERSION,
                               max_events=max_events, catalog=CATALOG_NAME, agency=agency,
                               quality_columns=QUALITY_COLUMNS)
        return Response(html, content_type="text/html; charset=utf-8")

    @bp.get("/version")
    def version() -> Response:
        return Response(VERSION, content_type=TEXT)

    @bp.get("/application.wadl")
    def wadl() -> Response:
        base = f"{request.host_url.rstrip('/')}{PREFIX}/"
        xml = render_template("fdsnws-event.wadl.xml", parameters=PARAMETERS, base=base, version=VERSION)
        return Response(xml, content_type="application/xml")

    @bp.get("/catalogs")
    def catalogs() -> Response:
        return Response(f'<?xml version="1.0" encoding="UTF-8"?>\n<Catalogs><Catalog>{CATALOG_NAME}</Catalog>'
                        "</Catalogs>\n", content_type="application/xml")

    @bp.get("/contributors")
    def contributors() -> Response:
        return Response(f'<?xml version="1.0" encoding="UTF-8"?>\n<Contributors><Contributor>{agency}'
                        "</Contributor></Contributors>\n", content_type="application/xml")

    @bp.get("/query")
    def query() -> Response:
        try:
            values = parse(request.args.to_dict(flat=False))
        except BadRequest as exc:
            return error_document(400, f"Bad request: {exc}")
        nodata = values.get("nodata", 204)
        try:
            events = [] if _selects_nothing(values, agency) else catalog.find_events(_query(values, max_events))
        except Exception:  # the catalog failed (a locked or broken database): the client gets the spec's 500
            log.exception("fdsnws-event query %s failed", request.url)
            return error_document(500, "The catalog could not be read; the error is in the service's log.")
        if len(events) > max_events:
            return error_document(413, f"The request selects more than {max_events} events: narrow it or page "
                                       "through it with limit and offset.")
        if not events:
            return Response(status=204) if nodata == 204 else error_document(404, "No events match the request.")
        if values.get("format", "xml") == "text":
            return Response(text_document(events, catalog=CATALOG_NAME, agency=agency), content_type=TEXT)
        cat = events_to_obspy(catalog, events, "eqt-monitor fdsnws-event query", request.query_string.decode(),
                              agency=agency, arrivals=values.get("includearrivals", False),
                              all_origins=values.get("includeallorigins", False))
        out = io.BytesIO()
        write_quakeml(cat, out)
        return Response(out.getvalue(), content_type="application/xml")

    return bp


def create_app(catalog: Catalog, *, agency: str = AGENCY, max_events: int = MAX_EVENTS) -> Flask:
    """A WSGI app serving only the event service (``eqt-monitor serve``): ``/`` leads to its documentation,
    any other path or method is the spec's error document."""
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(catalog, agency=agency, max_events=max_events), url_prefix=PREFIX)

    @app.get("/")
    def root() -> Response:
        return redirect(f"{PREFIX}/", code=302)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return error_document(exc.code or 500, exc.description or "")

    return app
