"""Data quality as live metrics: the numbers of ``eqt-monitor qc`` (``qc.station_quality``) for each
station's most recent data, computed by a scheduler job and exposed per station and channel.

The job reads the last ``span_s`` seconds before the newest sample received from each station (from
the station's source, as magnitudes do: the buffers hold under a minute of data), off the daemon's
main loop. What it found stays exposed (``metrics.QUALITY``) until the next run or the station's removal.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import obspy

from eqt_monitor.live import metrics
from eqt_monitor.qc import QCSettings, station_quality
from eqt_monitor.records import StationKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QualitySettings:
    """How often and over how much recent data the numbers are computed (seconds)."""

    every_s: float = 3600.0
    span_s: float = 3600.0
    ppsd_length_s: float = 3600.0  # PPSD segment length (ObsPy's default): at most span_s


def check_stations(groups: Mapping[str, Sequence[StationKey]],
                   data_end: Callable[[StationKey], float | None], inventory: obspy.Inventory | None,
                   settings: QualitySettings) -> int:
    """Compute each station's numbers over ``[data_end - span_s, data_end)`` and publish them
    (``metrics.QUALITY``); stations without data yet are skipped, one whose source fails is logged
    (and counted) and keeps its last numbers. Returns the stations checked."""
    qc = QCSettings(ppsd_length=settings.ppsd_length_s)
    checked = 0
    channels: dict[str, list] = {}  # per NET.STA.LOC: a station with two channel groups has both
    for uri, keys in sorted(groups.items()):
        for key in keys:
            end = data_end(key)
            if end is None:
                continue
            try:
                found = station_quality({uri: [key]}, end - settings.span_s, end, None, inventory=inventory,
                                        settings=qc)
            except Exception as exc:  # noqa: BLE001  (quality numbers are not worth the service)
                metrics.ERRORS.labels(kind="quality").inc()
                log.warning("station %s: quality check failed (%s: %s); keeping its last numbers", key,
                            type(exc).__name__, exc)
                continue
            channels.setdefault(key.id, []).extend(found.get(key.id, []))
            checked += 1
    for station, found_channels in channels.items():
        metrics.QUALITY.update(station, found_channels, time.time())
    return checked
