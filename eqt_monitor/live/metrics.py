"""Prometheus metrics of the monitor: one registry, every collector defined once here.

Names are ``eqt_monitor_*`` with their unit (``_seconds``, ``_ratio``; counters get ``_total``
from the client library). Per-station series carry a ``station`` label (``NET.STA.LOC``).
Instrument where things happen (``metrics.PICKS.labels(phase="P").inc()``); sources, which must not
import this module, report through ``RECORDER`` (a ``records.Recorder``) handed to them. ``serve`` exposes
``/metrics`` and ``/healthz`` (and the status page) over HTTP on a background thread (``live/web.py``),
on 127.0.0.1 by default.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from flask import Blueprint
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from eqt_monitor.errors import UserError
from eqt_monitor.live import web

log = logging.getLogger(__name__)

DEFAULT_ADDR = "127.0.0.1:9108"

REGISTRY = CollectorRegistry()

# ingest
RECORDS_RECEIVED = Counter("eqt_monitor_records_received", "miniSEED records received", ["station"], registry=REGISTRY)
SAMPLES_RECEIVED = Counter("eqt_monitor_samples_received", "Samples received", ["station"], registry=REGISTRY)
GAPS = Counter("eqt_monitor_gaps", "Gaps found in a station's incoming data", ["station"], registry=REGISTRY)
OVERLAPS = Counter("eqt_monitor_overlaps", "Overlapping or repeated data found in a station's incoming data",
                   ["station"], registry=REGISTRY)
BUFFER_FILL = Gauge("eqt_monitor_buffer_fill_ratio", "Fill of a station's buffer (0 empty .. 1 full)", ["station"],
                    registry=REGISTRY)
RECONNECTS = Counter("eqt_monitor_reconnects", "Reconnections of a live source", ["source"], registry=REGISTRY)
STATION_SILENT = Gauge("eqt_monitor_station_silent", "1 while a station has sent no data for longer than the "
                       "daemon's silence limit, else 0", ["station"], registry=REGISTRY)
DATA_LOST_SECONDS = Counter("eqt_monitor_data_lost_seconds", "Seconds of a station's data a live source could not "
                            "get (e.g. no longer on a server whose sequence numbers were reset)", ["station"],
                            registry=REGISTRY)
ERRORS = Counter("eqt_monitor_errors", "Errors by kind (connect, decode, server_error, ...)", ["kind"],
                 registry=REGISTRY)

# inference
WINDOWS_PREDICTED = Counter("eqt_monitor_windows_predicted", "60 s windows run through the model", registry=REGISTRY)
INFERENCE_BATCH_SIZE = Histogram("eqt_monitor_inference_batch_size", "Windows per model call",
                                 buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=REGISTRY)
INFERENCE_SECONDS = Histogram("eqt_monitor_inference_seconds", "Duration of one batched model call",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=REGISTRY)

# picks, detections, events
PICK_LATENCY = Histogram("eqt_monitor_pick_latency_seconds",
                         "From the arrival of the data a pick was made on to the pick being written",
                         buckets=(1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 1800, 3600), registry=REGISTRY)
PHASE_TO_PICK = Histogram("eqt_monitor_phase_to_pick_seconds",
                          "From a phase's arrival at the daemon (the wall time the data reached its station's newest "
                          "sample, less the data after the pick) to its pick being written; status preliminary "
                          "(picks: early) or final", ["status"],
                          buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600), registry=REGISTRY)
EARLY_PICKS = Counter("eqt_monitor_early_picks", "Preliminary picks (picks: early) written (outcome=preliminary), "
                      "then replaced by their final pick (final) or retracted (rejected)", ["outcome"], registry=REGISTRY)
PICKS = Counter("eqt_monitor_picks", "Picks written", ["phase"], registry=REGISTRY)
DETECTIONS = Counter("eqt_monitor_detections", "Detections written", registry=REGISTRY)
EVENTS = Counter("eqt_monitor_events", "Events (associated origins) written", registry=REGISTRY)
EVENT_CHANGES = Counter("eqt_monitor_event_changes", "Stored events changed by late picks: updated (a new origin "
                        "version) or rejected (no support left)", ["change"], registry=REGISTRY)
ASSOCIATION_SECONDS = Histogram("eqt_monitor_association_seconds", "Duration of one association slice",
                                buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120), registry=REGISTRY)
PHASES = ("P", "S")
for _phase in PHASES:  # a series at 0 from the start: "no pick since start" is 0, not an empty vector
    PICKS.labels(phase=_phase)

# catalog
CATALOG_WRITABLE = Gauge("eqt_monitor_catalog_writable", "1 while the catalog accepts writes, 0 while writes fail "
                         "(e.g. a full disk) and picks wait in memory", registry=REGISTRY)
CATALOG_WRITE_ERRORS = Counter("eqt_monitor_catalog_write_errors", "Failed catalog writes (each is retried)",
                               registry=REGISTRY)
CATALOG_HELD = Gauge("eqt_monitor_catalog_held_items", "Picks and detections held in memory until the catalog "
                     "accepts them", registry=REGISTRY)

MODEL = Info("eqt_monitor_model", "The model in use: name, weights sha256, Keras backend", registry=REGISTRY)


class _DataLatency(Collector):
    """``eqt_monitor_data_latency_seconds{station}``: now − end of the newest sample received, at scrape time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def observe(self, station: str, data_end: float) -> None:
        with self._lock:
            if data_end > self._last.get(station, float("-inf")):
                self._last[station] = data_end

    def forget(self, station: str) -> None:
        with self._lock:
            self._last.pop(station, None)

    def last(self, station: str) -> float | None:
        with self._lock:
            return self._last.get(station)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("eqt_monitor_data_latency_seconds",
                                   "Now minus the end of the newest sample received from a station",
                                   labels=["station"])
        now = self._clock()
        with self._lock:
            for station, end in sorted(self._last.items()):
                family.add_metric([station], now - end)
        yield family


_LATENCY = _DataLatency()
REGISTRY.register(_LATENCY)


class _AssociationLag(Collector):
    """``eqt_monitor_association_lag_seconds``: now − the association horizon (events with an earlier
    origin are committed), at scrape time, so it keeps growing while association stands still. No
    sample before the first advance: "never associated" is ``absent()``, not a lag of 0."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._horizon: float | None = None
        self._clock = clock

    def set(self, lag: float) -> None:
        """Record the lag just after an advance (the daemon's call); the horizon it implies is kept."""
        self._horizon = self._clock() - lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("eqt_monitor_association_lag_seconds", "Wall time now minus the association "
                                   "horizon (events with an earlier origin are committed): grows when association "
                                   "falls behind or waits for a station; absent before the first association")
        horizon = self._horizon
        if horizon is not None:
            family.add_metric([], self._clock() - horizon)
        yield family


ASSOCIATION_LAG = _AssociationLag()
REGISTRY.register(ASSOCIATION_LAG)

QUALITY_HELP = {  # the data-quality families (``live/quality.py`` computes them)
    "eqt_monitor_noise_psd_decibels": "Noise PSD of a channel's recent data in a period band (median over PPSD segments "
                                      "of the band mean; dB rel. 1 (m/s^2)^2/Hz with a response, else 1 count^2/Hz: "
                                      "label unit)",
    "eqt_monitor_noise_above_nlnm_decibels": "How far the band's noise PSD lies above Peterson's NLNM (dB; channels "
                                             "with a response only)",
    "eqt_monitor_noise_below_nhnm_decibels": "How far the band's noise PSD lies below Peterson's NHNM (dB; negative: "
                                             "noisier than the NHNM)",
    "eqt_monitor_clipped_samples": "Samples at or beyond the clip level in a channel's recent data",
    "eqt_monitor_timing_quality_percent": "Median miniSEED timing quality (blockette 1001) of a channel's recent "
                                          "records (archives only)",
    "eqt_monitor_clock_locked_ratio": "Share of a channel's recent records with the clock-locked flag (archives only)",
    "eqt_monitor_channel_flat": "1 when (part of) a clock hour of a channel's recent data is flat (dead), else 0",
    "eqt_monitor_quality_checked_timestamp_seconds": "When a station's quality numbers were last computed (POSIX s)",
}


def band_label(period_s: tuple[float, float]) -> str:
    """``(0.1, 1.0)`` → ``"0.1-1s"``."""
    return f"{period_s[0]:g}-{period_s[1]:g}s"


class QualityCollector(Collector):
    """The last computed ``qc.ChannelQuality`` list of each station, as gauge families at scrape time."""

    def __init__(self) -> None:
        self._found: dict[str, tuple[float, list]] = {}
        self._lock = threading.Lock()

    def update(self, station: str, channels: list, at: float) -> None:
        with self._lock:
            self._found[station] = (at, list(channels))

    def forget(self, station: str) -> None:
        with self._lock:
            self._found.pop(station, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fam = {name: GaugeMetricFamily(name, text, labels=_labels(name)) for name, text in QUALITY_HELP.items()}
        with self._lock:
            found = sorted(self._found.items())
        for station, (at, channels) in found:
            fam["eqt_monitor_quality_checked_timestamp_seconds"].add_metric([station], at)
            for q in channels:
                cha = q.channel.split(".")[-1]
                for b in q.bands:
                    band = band_label(b.period_s)
                    if b.psd_db is not None:
                        fam["eqt_monitor_noise_psd_decibels"].add_metric([station, cha, band, q.unit], b.psd_db)
                    if b.above_nlnm_db is not None:
                        fam["eqt_monitor_noise_above_nlnm_decibels"].add_metric([station, cha, band], b.above_nlnm_db)
                        fam["eqt_monitor_noise_below_nhnm_decibels"].add_metric([station, cha, band], b.below_nhnm_db)
                fam["eqt_monitor_clipped_samples"].add_metric([station, cha], q.clipped_samples)
                if q.timing_quality_median is not None:
                    fam["eqt_monitor_timing_quality_percent"].add_metric([station, cha], q.timing_quality_median)
                if q.clock_locked_percent is not None:
                    fam["eqt_monitor_clock_locked_ratio"].add_metric([station, cha], q.clock_locked_percent / 100.0)
                fam["eqt_monitor_channel_flat"].add_metric([station, cha], 1.0 if q.flat_hours else 0.0)
        yield from fam.values()


def _labels(name: str) -> list[str]:
    if name == "eqt_monitor_quality_checked_timestamp_seconds":
        return ["station"]
    if name == "eqt_monitor_noise_psd_decibels":
        return ["station", "channel", "band", "unit"]
    if "_nlnm_" in name or "_nhnm_" in name:
        return ["station", "channel", "band"]
    return ["station", "channel"]


QUALITY = QualityCollector()
REGISTRY.register(QUALITY)

_PER_STATION = (RECORDS_RECEIVED, SAMPLES_RECEIVED, GAPS, OVERLAPS, BUFFER_FILL, STATION_SILENT, DATA_LOST_SECONDS)


def observe_data(station: str, samples: int, data_end: float) -> None:
    """Count one received record of ``samples`` samples ending at ``data_end`` (POSIX s) for ``station``."""
    RECORDS_RECEIVED.labels(station=station).inc()
    SAMPLES_RECEIVED.labels(station=station).inc(samples)
    _LATENCY.observe(station, data_end)


def data_end(station: str) -> float | None:
    """End (POSIX s) of the newest sample received from ``station``, None before its first."""
    return _LATENCY.last(station)


class MetricsRecorder:
    """The ``records.Recorder`` the live service hands its sources: what they report becomes metrics."""

    def error(self, kind: str, n: int = 1) -> None:
        ERRORS.labels(kind=kind).inc(n)

    def data(self, station: str, samples: int, end: float) -> None:
        observe_data(station, samples, end)

    def reconnect(self, source: str) -> None:
        RECONNECTS.labels(source=source).inc()

    def data_lost(self, station: str, seconds: float) -> None:
        DATA_LOST_SECONDS.labels(station=station).inc(seconds)


RECORDER = MetricsRecorder()


def forget_station(station: str) -> None:
    """Drop a station's series (it was removed from the configuration)."""
    for metric in _PER_STATION:
        try:
            metric.remove(station)
        except KeyError:
            pass
    _LATENCY.forget(station)
    QUALITY.forget(station)


def set_model_info(name: str, weights_sha256: str, backend: str) -> None:
    """Publish ``eqt_monitor_model_info{name,weights_sha256,backend} 1``."""
    MODEL.info({"name": name, "weights_sha256": weights_sha256, "backend": backend})


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) → ``(host, port)``; a bad one raises ``UserError`` naming it."""
    host, sep, port = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"metrics address {addr!r}: expected HOST:PORT, e.g. {DEFAULT_ADDR}")
    return host, int(port)


Health = web.Health
MetricsServer = web.WebServer  # the running endpoint: ``host``, ``port``, ``url``, ``close()``


def serve(addr: str = DEFAULT_ADDR, health: Health | None = None, page: web.Page | None = None,
          blueprints: Sequence[tuple[Blueprint, str]] = ()) -> MetricsServer:
    """Serve ``/metrics`` (this module's registry) and ``/healthz`` on ``addr`` from a background thread
    (``live/web.py``: Flask on waitress); with ``page``, the status page at ``/status`` too, and
    ``blueprints`` (``(blueprint, url prefix)`` pairs) beside them.

    ``health`` returns ``True``/``False`` or ``(ok, detail)``; ``/healthz`` answers 200 or 503 with
    the detail. Port 0 picks a free port (see ``MetricsServer.port``).
    """
    host, port = parse_addr(addr)
    try:
        return web.serve(host, port, REGISTRY, health, page, blueprints)
    except OSError as exc:
        raise UserError(f"metrics address {addr!r}: cannot listen: {exc.strerror or exc}") from exc
