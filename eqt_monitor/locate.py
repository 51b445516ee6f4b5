"""From stored picks to stored events: association, location and local magnitude for a span.

``replay`` calls ``locate_span`` once at the end of a run; the daemon feeds its
``events.live.LiveAssociator`` and calls ``add_magnitudes`` for the events it commits. Both write
through the catalog, whose idempotent writes make a re-run add nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import obspy

from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import MonitorConfig, read_stationxml
from eqt_monitor.driver import Fetch
from eqt_monitor.events.associator import associate
from eqt_monitor.events.magnitude import local_magnitude, waveform_span
from eqt_monitor.records import Event

log = logging.getLogger(__name__)

def read_inventories(paths: Sequence[Path]) -> obspy.Inventory | None:
    """All StationXML files merged into one inventory (responses for ML); ``None`` when there are none."""
    if not paths:
        return None
    inventory = obspy.Inventory()
    for path in paths:
        inventory += read_stationxml(Path(path))
    return inventory


def add_magnitudes(catalog: Catalog, events: Sequence[Event], fetch: Fetch, inventory: obspy.Inventory | None) -> None:
    """Compute and store ML for each event from its stations' raw waveforms (see ``magnitude``); a
    rejected event keeps the magnitude it had."""
    for event in (e for e in events if e.status != "rejected"):
        stations = sorted({a.pick.station for a in event.arrivals})
        stream = fetch(stations, *waveform_span(event)) if inventory is not None else obspy.Stream()
        catalog.set_magnitude(event.id, local_magnitude(event, stream, inventory))


def locate_span(catalog: Catalog, config: MonitorConfig, start: float, end: float, fetch: Fetch) -> list[Event]:
    """Associate the span's stored picks into located events, store the new ones with their ML."""
    coordinates = config.coordinates()
    if not coordinates:
        log.warning("no station coordinates in the config: picks are not associated into events")
        return []
    picks = catalog.picks(start, end)
    events = associate(picks, coordinates, config.association)
    new = catalog.add_events(events)
    add_magnitudes(catalog, new, fetch, read_inventories(config.inventories))
    log.info("association: %d picks -> %d events (%d new)", len(picks), len(events), len(new))
    return new
