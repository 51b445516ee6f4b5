"""StationXML from an FDSN station service, cached on disk.

``fdsn://HOST[:PORT]?network=CI&station=BOM,COA`` (``fdsns://`` for https) names a station-service
query; :func:`fetch_inventory` asks it through ObsPy's FDSN client at ``level=response`` and
keeps the answer as ``inventory-<hash>.xml`` with a JSON sidecar holding the URI and the fetch
time (both written atomically). When the service cannot be reached it returns the cached copy
(one warning naming the URI and the cache's fetch time, one ``inventory_fetch`` error on the
recorder); with no cache it raises a one-line ``UserError`` naming the URI.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import obspy
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import FDSNNoDataException

from eqt_monitor.errors import UserError, one_line
from eqt_monitor.records import NullRecorder, Recorder

log = logging.getLogger(__name__)

SCHEMES = {"fdsn": "http", "fdsns": "https"}
QUERY_KEYS = ("network", "station", "location", "channel")  # what a query may select by


def is_station_service(text: str) -> bool:
    """Whether an ``inventory:`` value names a station service rather than a local file."""
    return text.partition("://")[0].lower() in SCHEMES and "://" in text


def parse_service(uri: str) -> tuple[str, dict[str, str]]:
    """``(base URL, selection)`` of a station-service URI; ``UserError`` naming it when malformed."""
    parts = urlsplit(uri)
    if parts.scheme.lower() not in SCHEMES or not parts.hostname or parts.path not in ("", "/"):
        raise UserError(f"inventory {uri!r}: expected fdsn://HOST[:PORT]?network=…&station=… (fdsns:// for https)")
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"inventory {uri!r}: bad port") from None
    selection = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(selection) - set(QUERY_KEYS))
    if unknown:
        raise UserError(f"inventory {uri!r}: unknown query key {unknown[0]!r} (expected {', '.join(QUERY_KEYS)})")
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    return f"{SCHEMES[parts.scheme.lower()]}://{netloc}", selection


def cache_paths(uri: str, folder: Path) -> tuple[Path, Path]:
    """Where ``uri``'s StationXML and its sidecar (URI, fetch time) are kept in ``folder``."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return folder / f"inventory-{digest}.xml", folder / f"inventory-{digest}.json"


def fetch_inventory(uri: str, folder: Path, recorder: Recorder | None = None, timeout: float = 60.0) -> Path:
    """The StationXML file of ``uri``'s stations: fetched now into ``folder``, else the cached copy."""
    base_url, selection = parse_service(uri)
    xml, sidecar = cache_paths(uri, folder)
    try:
        body = io.BytesIO()
        client = Client(base_url, timeout=timeout, _discover_services=False)
        client.get_stations(level="response", filename=body, **selection)
        if b"FDSNStationXML" not in body.getvalue()[:4096]:  # an error page is not cached
            raise ValueError("the answer is not StationXML")
    except FDSNNoDataException:
        raise UserError(f"inventory {uri}: the station service has no stations for this query") from None
    except Exception as exc:  # noqa: BLE001 - unreachable, timed out, an HTTP error or a broken document
        reason = one_line(f"{type(exc).__name__}: {exc}", 200)
        fetched = _fetch_time(sidecar, xml)
        if fetched is None:
            raise UserError(f"inventory {uri}: station service unreachable ({reason}) and no cached copy") from None
        (recorder or NullRecorder()).error("inventory_fetch")
        log.warning("inventory %s: station service unreachable (%s); using the copy fetched %s",
                    uri, reason, obspy.UTCDateTime(fetched).isoformat())
        return xml
    _write_atomically(xml, body.getvalue())
    _write_atomically(sidecar, json.dumps({"uri": uri, "fetched": time.time()}).encode())
    log.info("inventory %s: fetched %d bytes of StationXML into %s", uri, len(body.getvalue()), xml)
    return xml


def _fetch_time(sidecar: Path, xml: Path) -> float | None:
    """When the cached ``xml`` was fetched (POSIX s): its sidecar's time, else (the sidecar lost or
    cut short) the file's mtime; None without a cached file."""
    if not xml.is_file():
        return None
    try:
        return float(json.loads(sidecar.read_text())["fetched"])
    except (OSError, ValueError, KeyError, TypeError):
        return xml.stat().st_mtime


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` at once (a crash leaves the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
