"""Stable resource ids (``smi:eqt-monitor/...``) derived from a record's content, so that storing
the same pick, detection or event twice adds nothing."""
from __future__ import annotations

import hashlib

from eqt_monitor.records import Detection, Pick

ID_PREFIX = "smi:eqt-monitor"


def digest(*parts: object) -> str:
    """A short, stable content hash (first 20 hex digits of sha256) of ``parts``."""
    text = "|".join(str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def centiseconds(t: float) -> int:
    """Time rounded to 10 ms, the resolution that identifies a pick."""
    return int(round(t * 100.0))


def pick_id(pick: Pick, weights_sha256: str) -> str:
    """Resource id of a pick: station, phase, time to 10 ms and the weights that made it."""
    return f"{ID_PREFIX}/pick/{digest(pick.station.id, pick.phase, centiseconds(pick.time), weights_sha256)}"


def detection_id(det: Detection, weights_sha256: str) -> str:
    """Resource id of a detection: station, start and end to 10 ms, and the weights."""
    cs = centiseconds
    return f"{ID_PREFIX}/detection/{digest(det.station.id, cs(det.start), cs(det.end), weights_sha256)}"


def origin_id(event_id: str, version: int) -> str:
    """Resource id of an event's origin ``version``: version 1 keeps the event's hash (the ids of
    catalogs before schema 3), later versions add ``/VERSION``."""
    base = event_id.replace("/event/", "/origin/")
    return base if version == 1 else f"{base}/{version}"


def magnitude_id(origin_id: str, magnitude_type: str) -> str:
    """Resource id of an origin's magnitude: ``magnitude/<origin id after origin/>/<type>``."""
    return f"{ID_PREFIX}/magnitude/{origin_id.split('/origin/', 1)[1]}/{magnitude_type}"


def early_pick_id(pick: Pick, weights_sha256: str) -> str:
    """Resource id of a preliminary pick (``picks: early``): as ``pick_id``, under ``pick/early/``."""
    return f"{ID_PREFIX}/pick/early/{digest(pick.station.id, pick.phase, centiseconds(pick.time), weights_sha256)}"
