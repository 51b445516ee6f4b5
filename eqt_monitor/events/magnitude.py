"""Local magnitude ML from Wood-Anderson-simulated peak amplitudes.

For each station with an arrival, each horizontal component is corrected for its StationXML
response to ground displacement (ObsPy ``remove_response``) and passed through the standard
Wood-Anderson seismometer (natural period 0.8 s, damping 0.8, static magnification 2080;
displacement in, displacement out: two zeros at the origin, poles -6.283 +/- 4.7124j). The peak
absolute amplitude ``A`` (mm) in a window from 1 s before P to well after S gives, with ``r`` the
hypocentral distance in km, Hutton & Boore (1987, BSSA 77(6), 2074-2094) for southern California:

    ML = log10(A) + 1.110 log10(r / 100) + 0.00189 (r - 100) + 3.0

A station's ML is the mean of its horizontal components; the event's ML is the median of the
stations and its uncertainty the scaled median absolute deviation (1.4826 MAD). Without responses
(or usable data) no magnitude is given, and the reason is recorded.
"""
from __future__ import annotations

import logging
import math
from statistics import median

import numpy as np
from obspy import Inventory, Stream, UTCDateTime

from eqt_monitor.records import Event, Magnitude, StationKey, StationMagnitude

log = logging.getLogger(__name__)

WOOD_ANDERSON = {  # displacement response, ObsPy PAZ dictionary
    "poles": [-6.283 + 4.7124j, -6.283 - 4.7124j],
    "zeros": [0j, 0j],
    "gain": 1.0,
    "sensitivity": 2080.0,
}
METHOD = "smi:eqt-monitor/magnitude/ML/hutton-boore-1987"
PRE_FILTER = (0.1, 0.2, 40.0, 45.0)  # Hz, cosine taper applied while removing the response
PAD = 20.0  # s of data kept on each side of the window for the response removal


def hutton_boore_log_a0(r_km: float) -> float:
    """``-log10 A0(r)`` of Hutton & Boore (1987): 1.110 log10(r/100) + 0.00189 (r - 100) + 3.0."""
    return 1.110 * math.log10(r_km / 100.0) + 0.00189 * (r_km - 100.0) + 3.0


def amplitude_window(event: Event, station: StationKey, vp_vs: float = 1.73) -> tuple[float, float]:
    """The time window (POSIX s) searched for the peak at ``station``: P - 1 s to S + max(5 s, 2 (S - P))."""
    picks = {a.pick.phase: a.pick.time for a in event.arrivals if a.pick.station == station}
    t0 = event.origin.time
    tp = picks.get("P", t0 + (picks["S"] - t0) / vp_vs if "S" in picks else t0)
    ts = picks.get("S", t0 + (tp - t0) * vp_vs)
    return tp - 1.0, ts + max(5.0, 2.0 * (ts - tp))


def waveform_span(event: Event) -> tuple[float, float]:
    """The data span (POSIX s) :func:`local_magnitude` needs for ``event``, padding included."""
    windows = [amplitude_window(event, s) for s in {a.pick.station for a in event.arrivals}]
    return min(w[0] for w in windows) - PAD, max(w[1] for w in windows) + PAD


def _horizontal_peaks(stream: Stream, inventory: Inventory, station: StationKey,
                      window: tuple[float, float]) -> tuple[list[float], str | None]:
    """Wood-Anderson peak amplitudes (m) of the station's horizontal components, or the reason there are none."""
    traces = stream.select(network=station.network, station=station.station, location=station.location,
                           channel=f"{station.channel_prefix or '*'}?")
    traces = [t for t in traces if t.stats.channel[-1] in "EN12"]
    if not traces:
        return [], "no horizontal data"
    peaks, problems = [], []
    for tr in traces:
        tr = tr.copy()
        tr.trim(UTCDateTime(window[0] - PAD), UTCDateTime(window[1] + PAD))
        if tr.stats.npts < 2 or tr.stats.starttime > UTCDateTime(window[0]) or tr.stats.endtime < UTCDateTime(window[1]):
            problems.append(f"{tr.id}: data does not cover the window")
            continue
        try:
            tr.detrend("demean")
            tr.remove_response(inventory=inventory, output="DISP", pre_filt=PRE_FILTER, water_level=None)
        except Exception as exc:  # ObsPy raises plain Exceptions for a missing or unusable response
            problems.append(f"{tr.id}: no usable response ({str(exc).splitlines()[0]})")
            continue
        tr.simulate(paz_simulate=WOOD_ANDERSON)
        part = tr.slice(UTCDateTime(window[0]), UTCDateTime(window[1])).data
        peaks.append(float(np.max(np.abs(part))))
    return peaks, "; ".join(problems) or None


def local_magnitude(event: Event, stream: Stream, inventory: Inventory | None) -> Magnitude:
    """ML of ``event`` from raw-count waveforms ``stream`` (covering :func:`waveform_span`) and StationXML."""
    if inventory is None:
        return Magnitude("ML", None, None, 0, METHOD, reason="no StationXML inventory (responses) given")
    origin = event.origin
    station_mags, reasons = [], []
    epicentral = {}
    for a in event.arrivals:
        epicentral.setdefault(a.pick.station, a.distance_km)
    for station, epi in sorted(epicentral.items()):
        r = math.hypot(epi, origin.depth_km)
        peaks, problem = _horizontal_peaks(stream, inventory, station, amplitude_window(event, station))
        if problem:
            reasons.append(f"{station.id}: {problem}")
        peaks = [p for p in peaks if p > 0]
        if not peaks:
            continue
        values = [math.log10(p * 1000.0) + hutton_boore_log_a0(r) for p in peaks]  # A in mm
        station_mags.append(StationMagnitude(station, sum(values) / len(values), max(peaks), r))
    for reason in reasons:
        log.warning("ML of event at %s: %s", UTCDateTime(origin.time), reason)
    if not station_mags:
        why = "; ".join(reasons) or "no station amplitudes"
        return Magnitude("ML", None, None, 0, METHOD, reason=why)
    values = [s.value for s in station_mags]
    middle = median(values)
    spread = 1.4826 * median(abs(v - middle) for v in values) if len(values) > 1 else None
    return Magnitude("ML", middle, spread, len(values), METHOD, None, tuple(station_mags))
