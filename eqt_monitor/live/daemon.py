"""``eqt-monitor run``: the live monitoring service, one process (see DESIGN.md, Decisions, Daemon).

Threads: ingest (one SeedLink collector per source; FDSN polls on the scheduler) put traces on a
queue; the main thread buffers them, feeds the ``Engine``, predicts (a full batch at once, a
partial one when its oldest window waited ``batch_wait`` s), writes picks and detections and
commits progress; APScheduler jobs associate, export the rolling QuakeML and check station
health. SIGTERM drains and exits 0; SIGHUP reloads the stations.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import obspy

from eqt_monitor.catalog.backend import is_server
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import MonitorConfig, load_config
from eqt_monitor.driver import CatalogWriter, StationPipeline, fetcher, sources_by_station
from eqt_monitor.errors import UserError
from eqt_monitor.events.live import LiveAssociator
from eqt_monitor.live import metrics
from eqt_monitor.live.health import StationHealth
from eqt_monitor.live.progress import Progress, state_key
from eqt_monitor.live.quality import QualitySettings, check_stations
from eqt_monitor.live.shards import SharedAssociation
from eqt_monitor.live.status import StatusPage
from eqt_monitor.live.status import gather as gather_status
from eqt_monitor.live.sdnotify import Notifier
from eqt_monitor.live.writes import WRITE_ERRORS, Batch, PendingWrites, Storage
from eqt_monitor.locate import add_magnitudes, read_inventories
from eqt_monitor.pipeline.engine import EngineOutput
from eqt_monitor.records import Pick, StationKey
from eqt_monitor.service import fdsnws
from eqt_monitor.sources import LiveOptions, LiveSource, open_live

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonSettings:
    """Timing of the service (seconds)."""

    batch_wait: float = 1.0  # a partial batch is predicted once its oldest window waited this long
    commit_every: float = 2.0  # progress and SeedLink state are saved this often
    associate_every: float = 10.0
    export_every: float = 60.0
    health_every: float = 10.0
    poll_every: float = 30.0  # FDSN polls
    silent_after: float = 120.0  # a station without data this long is flagged
    rolling_s: float = 86400.0  # the rolling QuakeML holds events this far back from the association horizon
    shutdown_bound: float = 30.0  # SIGTERM → exit within this (else a hard exit, status 1)
    shard_stale_after: float = 60.0  # a shared catalog: a shard silent this long no longer holds association back
    max_batches_per_step: int = 8  # model calls per loop turn: a backlog is worked off in turns that
    # still commit, ping the watchdog and see SIGTERM/SIGHUP
    max_held: int = 200_000  # picks + detections held in memory while the catalog refuses writes; past it
    # no more data is taken (the SeedLink server keeps it)
    quality: QualitySettings = QualitySettings()  # the scheduled data-quality numbers (live/quality.py)


class Daemon:
    """The running service; ``run()`` blocks until SIGTERM/SIGINT (or ``stop()``) and returns 0."""

    def __init__(self, config: MonitorConfig, *, predict_fn: Callable[[np.ndarray], np.ndarray], model_name: str,
                 weights_sha256: str, source: str | None = None, db: Path | str | None = None,
                 metrics_addr: str | None = None, begin: float | None = None, quakeml: Path | None = None,
                 settings: DaemonSettings = DaemonSettings(), shard: str | None = None) -> None:
        self.config, self.source_override, self.begin, self.settings = config, source, begin, settings
        self.model_name, self.weights_sha256 = model_name, weights_sha256
        self.target = db or config.catalog  # the file or the URI, password included (a second connection)
        self.catalog = Catalog(self.target)
        self.events_catalog: Catalog | None = None  # the event service's own connection (metrics.serve_events)
        # a PostgreSQL catalog may be shared by several daemons: the one holding its lock associates
        self.shared = (SharedAssociation(self.catalog, self.target, shard, config.coordinates(), config.association,
                                         settings.shard_stale_after) if is_server(self.target) else None)
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.quakeml = quakeml or self.state_dir / "events.xml"
        self.metrics_addr = metrics_addr or config.metrics_addr
        self.progress = Progress(self.catalog, state_key(shard))
        self.storage = Storage(self.catalog.path)
        self._run_recorded = False
        self.writer = CatalogWriter(self.catalog, model=model_name, weights_sha256=weights_sha256)
        self.pending = PendingWrites(self.writer, self.storage, max_held=settings.max_held)
        self.health = StationHealth([s.key for s in config.stations], config.buffer, settings.silent_after)
        self.pipeline = StationPipeline(config, self._timed(predict_fn), on_station_error=self._station_failed,
                                        observer=self.health, early_picks=config.picks == "early")
        self._queue: queue.Queue = queue.Queue(maxsize=200_000)
        self._stop, self._reload, self._closing = threading.Event(), threading.Event(), threading.Event()
        self._ingests: dict[str, LiveSource] = {}
        self._assoc_lock = threading.Lock()
        self.associator = self._new_associator()
        self._oldest_unpredicted: dict[StationKey, float] = {}
        self._pending_since: float | None = None
        self._last_loop = time.monotonic()
        self.notifier = Notifier()

    # ------------------------------------------------------------------ setup

    def _timed(self, predict_fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        def predict(batch: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            out = predict_fn(batch)
            metrics.INFERENCE_SECONDS.observe(time.perf_counter() - t0)
            metrics.INFERENCE_BATCH_SIZE.observe(len(batch))
            return out
        return predict

    def _record_run(self) -> None:
        """The run record and station coordinates (``plot`` without ``--source``, the EqT CSV);
        on a refused write ``commit`` tries again."""
        sources = sources_by_station(self.config, self.source_override)
        self._run_recorded = self.storage.run(self.catalog.path, "writing the run record",
                                              lambda: self.writer.record_run(self.config, sources, {"live": True}))

    def _new_associator(self) -> LiveAssociator | None:
        coordinates = self.config.coordinates()
        if not coordinates:
            log.warning("no station coordinates in the config: picks are not associated into events")
            return None
        if self.shared is not None:  # it associates from the catalog, while it holds the lock
            self.shared.coordinates = coordinates
            return None
        return LiveAssociator(coordinates, self.config.association, store=self.catalog)

    def _associator(self) -> LiveAssociator | None:
        """The associator in use: this daemon's own, or on a shared catalog the lock holder's."""
        return self.shared.associator if self.shared is not None else self.associator

    def _put(self, trace: obspy.Trace, arrived: float) -> None:
        while not self._closing.is_set():
            try:
                return self._queue.put((trace, arrived), timeout=0.2)
            except queue.Full:
                continue

    def _start_ingests(self, keys: list[StationKey], positions: dict[StationKey, float] | None = None) -> None:
        """Open and start the live source of each URI serving some of ``keys``; ``positions``: where
        the replaced sources of these stations got to (a reload carries it over), else the saved progress."""
        groups = sources_by_station(self.config, self.source_override)
        options = LiveOptions(self.state_dir, self.begin, self.settings.poll_every, metrics.RECORDER)
        for uri, group in sorted(groups.items()):
            mine = [k for k in group if k in keys]
            if not mine:
                continue
            live = open_live(uri, mine, self._put, options, {**self.progress.resume(mine), **(positions or {})})
            live.start()
            self._ingests[uri] = live
            if live.poll_every is not None:
                self.scheduler.add_job(live.poll, "interval", seconds=live.poll_every, id=f"poll:{uri}",
                                       next_run_time=_now_dt(), max_instances=1, coalesce=True)
            log.info("ingest: %s for %d station(s)", uri, len(mine))

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = BackgroundScheduler(job_defaults={"max_instances": 1, "coalesce": True})
        s = self.settings
        self.scheduler.add_job(self.associate, "interval", seconds=s.associate_every, id="associate")
        self.scheduler.add_job(self.export, "interval", seconds=s.export_every, id="export")
        self.scheduler.add_job(self.health.check_silence, "interval", seconds=s.health_every, id="health")
        self.scheduler.add_job(self.check_quality, "interval", seconds=s.quality.every_s, id="quality")
        self.scheduler.start()

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Serve until asked to stop; returns the exit status (0)."""
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        # the event service reads through a connection of its own: a large answer never holds the lock
        # the daemon's writes take (WAL readers and the writer do not wait for each other)
        self.events_catalog = Catalog(self.target) if self.config.serve_events else None
        events = [(fdsnws.create_blueprint(self.events_catalog, agency=self.config.agency), fdsnws.PREFIX)] \
            if self.events_catalog is not None else []
        self.http = metrics.serve(self.metrics_addr, health=self._health, page=self._status_page, blueprints=events)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is noise
        self._start_scheduler()
        self._record_run()
        self._start_ingests(self.pipeline.keys)
        log.info("run: %d stations, metrics on %s (status page %s/status), catalog %s", len(self.pipeline.keys),
                 self.http.url, self.http.url, self.catalog.path)
        self.notifier.notify("READY=1", f"STATUS=monitoring {len(self.pipeline.keys)} stations")
        watchdog = self.notifier.watchdog_interval()
        last_commit = last_ping = time.monotonic()
        while not self._stop.is_set():
            self._step()
            now = time.monotonic()
            if now - last_commit >= self.settings.commit_every:
                self.commit()
                last_commit = now
            if watchdog and now - last_ping >= watchdog:
                self.notifier.notify("WATCHDOG=1")
                last_ping = now
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
        return self._shutdown()

    def stop(self) -> None:
        """Ask the loop to drain and exit (what SIGTERM does)."""
        self._stop.set()

    def _step(self, wait: float | None = None) -> None:
        """Take what arrived (waiting at most ``wait`` s, default: not at all with a full batch
        waiting, else until the batch deadline or 0.2 s), feed, predict (at most
        ``max_batches_per_step`` batches) and write."""
        if wait is None:
            if self.pipeline.engine.pending_windows >= self.pipeline.engine.config.batch_size:  # a backlog: no waiting
                wait = 0.0
            elif self._pending_since is None:
                wait = 0.2
            else:
                wait = max(0.0, self._pending_since + self.settings.batch_wait - time.monotonic())
        self._last_loop = time.monotonic()
        if self.pending.full:  # the catalog refuses writes and we hold all we may: take no more data
            self._written(self.pending.flush())
            self._stop.wait(0.2)
            return
        try:
            items = [self._queue.get(timeout=wait)] if wait > 0 else []
        except queue.Empty:
            items = []
        while len(items) < 20_000:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for trace, arrived in items:
            key = self.pipeline.add(trace)
            if key is None:
                self.health.unexpected(trace.id)
                continue
            self.health.arrived(key, arrived)
            self._oldest_unpredicted.setdefault(key, arrived)
        cap = self.settings.max_batches_per_step
        self._write(self.pipeline.process(max_batches=cap))
        engine = self.pipeline.engine
        if engine.pending_windows:
            now = time.monotonic()
            if self._pending_since is None:
                self._pending_since = now
            elif now - self._pending_since >= self.settings.batch_wait:
                self._write(self.pipeline.process(flush=True, max_batches=cap))
        if not engine.pending_windows:
            self._pending_since = None

    def _write(self, out: EngineOutput) -> None:
        """Queue the output's new picks and detections with the progress they complete, and write."""
        now = time.time()
        metrics.WINDOWS_PREDICTED.inc(out.windows)
        picks, detections = self.writer.stamp(self.progress.keep(out.picks)), self.progress.keep(out.detections)
        arrived = [self._oldest_unpredicted.get(p.station, self.health.last_arrival.get(p.station, now)) for p in picks]
        if out.windows:  # stations whose windows were all predicted start their latency clock afresh
            waiting = self.pipeline.engine.pending_stations
            for key in [k for k in self._oldest_unpredicted if k not in waiting]:
                del self._oldest_unpredicted[key]
        settled = self.pipeline.settled()
        early = self.progress.keep(out.early_picks)
        self.pending.add(Batch(picks, detections, settled, arrived, self._phase_arrivals(picks, now), early,
                               self._phase_arrivals(early, now), out.early_outcomes))
        self._written(self.pending.flush())

    def _phase_arrivals(self, picks: list[Pick], now: float) -> list[float]:
        """Per pick, the wall time its phase reached the daemon: when its station's newest sample
        arrived, less the data time from the pick to that sample (as if the data came in real time)."""
        out = []
        for p in picks:
            reach = self.pipeline.engine.station(p.station).received_until
            arrived = self.health.last_arrival.get(p.station, now)
            out.append(arrived - max(0.0, (reach if reach is not None else p.time) - p.time))
        return out

    def _written(self, batch: Batch | None) -> None:
        """Bookkeeping of a batch now in the catalog: metrics, the associator, progress."""
        if batch is None:
            return
        now = time.time()
        for p, arrived, phase_arrived in zip(batch.picks, batch.arrived, batch.phase_arrived):
            metrics.PICKS.labels(phase=p.phase).inc()
            metrics.PICK_LATENCY.observe(max(0.0, now - arrived))
            metrics.PHASE_TO_PICK.labels(status="final").observe(max(0.0, now - phase_arrived))
        for phase_arrived in batch.early_arrived:
            metrics.PHASE_TO_PICK.labels(status="preliminary").observe(max(0.0, now - phase_arrived))
        if batch.early:
            metrics.EARLY_PICKS.labels(outcome="preliminary").inc(len(batch.early))
        for o in batch.outcomes:
            metrics.EARLY_PICKS.labels(outcome="rejected" if o.final is None else "final").inc()
        if batch.picks and self.associator is not None:
            with self._assoc_lock:
                self.associator.feed(batch.picks)
        if batch.detections:
            metrics.DETECTIONS.inc(len(batch.detections))
        self.progress.advance({k: t for k, t in batch.settled.items() if k in self.pipeline.buffers})

    def _station_failed(self, key: StationKey, exc: Exception) -> None:
        metrics.ERRORS.labels(kind="station_failed").inc()
        log.error("station %s: processing failed (%s: %s); its data so far is dropped and it restarts with the "
                  "next data", key, type(exc).__name__, exc)
        if key in self.pipeline.buffers:
            self.pipeline.add_station(key)
            self.health.add_station(key)

    # ------------------------------------------------------------------ progress, jobs

    def commit(self) -> None:
        """Save progress in the catalog, then each live source's resume points (not ahead of the catalog's)."""
        if self.pending.held or not self.storage.run(self.catalog.path, "saving progress", self.progress.save):
            return
        if not self._run_recorded:
            self._record_run()
        for live in list(self._ingests.values()):
            until = self.progress.reread_until(live.keys)
            self.storage.run(live.state_file or live.uri, "saving the SeedLink state", lambda: live.commit(until))

    def complete_until(self) -> float | None:
        """Time before which every station's picks are written: the least progress over the stations
        that send data (a silent one does not hold association back, unless all are silent). None
        while a station that is not yet silent has no progress."""
        flowing, silent = [], []
        for key in self.pipeline.keys:
            t = self.progress.get(key)
            if not self.health.is_silent(key):
                if t is None:
                    return None
                flowing.append(t)
            elif t is not None:
                silent.append(t)
        times = flowing or silent
        return min(times) if times else None

    def associate(self) -> None:
        """Scheduler job: commit the events no later pick can change, with their ML (on a shared
        catalog: publish this shard's horizon, and associate all shards' picks while holding the lock)."""
        until = self.complete_until()
        t0 = time.perf_counter()
        try:
            with self._assoc_lock:
                if self.shared is not None:
                    until = self.shared.step(until)
                associator = self._associator()
                if associator is None or until is None:
                    return
                events = associator.advance(until)
        except WRITE_ERRORS as exc:  # the slice is tried again at the next run
            self.storage.failed(self.catalog.path, "writing events", exc)
            return
        metrics.ASSOCIATION_SECONDS.observe(time.perf_counter() - t0)
        if math.isfinite(associator.horizon):
            metrics.ASSOCIATION_LAG.set(time.time() - associator.horizon)
        if events:
            new = sum(e.version == 1 and e.status != "rejected" for e in events)
            rejected = sum(e.status == "rejected" for e in events)
            metrics.EVENTS.inc(new)
            metrics.EVENT_CHANGES.labels(change="updated").inc(len(events) - new - rejected)
            metrics.EVENT_CHANGES.labels(change="rejected").inc(rejected)
            log.info("association: %d new, %d updated, %d rejected event(s) before %s", new,
                     len(events) - new - rejected, rejected, obspy.UTCDateTime(until))
            if self.inventory is not None:
                try:
                    add_magnitudes(self.catalog, events, self._fetch_merged, self.inventory)
                except Exception as exc:  # a magnitude is not worth the service
                    metrics.ERRORS.labels(kind="magnitude").inc()
                    log.warning("magnitudes of %d event(s) failed: %s", len(events), exc)

    @functools.cached_property
    def inventory(self) -> obspy.Inventory | None:
        """The config's StationXML files (responses for ML), read once; a reload reads them again."""
        return read_inventories(self.config.inventories)

    def _fetch_merged(self, keys: list[StationKey], start: float, end: float) -> obspy.Stream:
        """Raw waveforms for magnitudes, records merged into traces (live sources hand out records)."""
        return fetcher(self.config, self.source_override)(keys, start, end).merge(method=1)

    def export(self) -> None:
        """Scheduler job: rewrite the rolling QuakeML file (atomically)."""
        from eqt_monitor.catalog.export import export_quakeml

        associator = self._associator()
        horizon = associator.horizon if associator is not None else -math.inf
        if not math.isfinite(horizon):
            return
        tmp = self.quakeml.with_name(self.quakeml.name + ".tmp")

        def write() -> None:
            try:
                export_quakeml(self.catalog, tmp, start=horizon - self.settings.rolling_s, agency=self.config.agency)
                os.replace(tmp, self.quakeml)
            finally:
                tmp.unlink(missing_ok=True)

        self.storage.run(self.quakeml, "exporting QuakeML", write)

    def check_quality(self) -> int:
        """Scheduler job: the data-quality metrics of each station's most recent data (live/quality.py)."""
        return check_stations(sources_by_station(self.config, self.source_override),
                              lambda key: metrics.data_end(key.id), self.inventory, self.settings.quality)

    def _status_page(self) -> StatusPage:
        """The status page's data as of now (called on the HTTP thread)."""
        return gather_status(self.config, self.catalog, self.pipeline.keys)

    def _health(self) -> tuple[bool, str]:
        stalled = time.monotonic() - self._last_loop
        if stalled > 60:
            return False, f"main loop stalled for {stalled:.0f} s"
        problems = self.storage.problems()
        if problems:
            return False, "; ".join(problems) + f"; {self.pending.held} picks and detections held in memory"
        silent = [k.id for k in self.pipeline.keys if self.health.is_silent(k)]
        return True, f"ok; silent stations: {', '.join(silent)}" if silent else "ok"

    # ------------------------------------------------------------------ reload, shutdown

    def reload(self) -> None:
        """SIGHUP: re-read the config; start added stations, drop removed ones, keep the rest running."""
        try:
            new = load_config(self.config.path, recorder=metrics.RECORDER)  # refetches fdsn:// inventories
        except UserError as exc:
            metrics.ERRORS.labels(kind="reload").inc()
            log.error("reload: keeping the running configuration: %s", exc)
            return
        old_groups = sources_by_station(self.config, self.source_override)
        try:
            new_groups = sources_by_station(new, self.source_override)
        except UserError as exc:
            log.error("reload: keeping the running configuration: %s", exc)
            return
        old_keys, new_keys = set(self.pipeline.keys), {s.key for s in new.stations}
        self.commit()
        self.config = new
        self.__dict__.pop("inventory", None)  # drop the cached StationXML: the files may have changed
        changed = [uri for uri in set(old_groups) | set(new_groups)
                   if sorted(old_groups.get(uri, []), key=str) != sorted(new_groups.get(uri, []), key=str)]
        positions: dict[StationKey, float] = {}
        for uri in changed:
            live = self._ingests.pop(uri, None)
            if live is not None:
                live.stop()
                positions.update(live.positions())
                if self.scheduler.get_job(f"poll:{uri}"):
                    self.scheduler.remove_job(f"poll:{uri}")
        for key in sorted(old_keys - new_keys, key=str):
            self.pipeline.remove_station(key)
            self.health.remove_station(key)
        orientation = {s.key: s.orientation for s in new.stations}
        for key in old_keys & new_keys:  # a kept station's buffer keeps its rotation until it is reset
            self.pipeline.orientations[key] = orientation[key]
        for key in sorted(new_keys - old_keys, key=str):
            self.progress.rejoin(key)
            self.pipeline.add_station(key, orientation[key])
            self.health.add_station(key)
        with self._assoc_lock:
            self.associator = self._new_associator()
        self._record_run()
        self._start_ingests([k for uri in changed for k in new_groups.get(uri, [])], positions)
        log.info("reload: %d station(s) added, %d removed, %d kept", len(new_keys - old_keys),
                 len(old_keys - new_keys), len(old_keys & new_keys))

    def _shutdown(self) -> int:
        bound = threading.Timer(self.settings.shutdown_bound, _hard_exit, args=(self.settings.shutdown_bound,))
        bound.daemon = True
        bound.start()
        self.notifier.notify("STOPPING=1")
        log.info("run: stopping: draining buffers and writing state")
        self.scheduler.shutdown(wait=False)
        self._closing.set()
        for live in self._ingests.values():
            live.stop()
        while not self._queue.empty() and not self.pending.full:  # full: the catalog refuses writes; what
            self._step(wait=0)  # is still queued is read again after the restart (progress stays behind it)
        self._write(self.pipeline.process(flush=True))
        self._written(self.pending.flush(force=True))
        if self.pending.held:
            log.warning("run: %s: %d picks and detections could not be written; the next start makes them again "
                        "from the saved progress", self.catalog.path, self.pending.held)
        self.commit()
        self.associate()
        self.export()
        if self.shared is not None:
            self.shared.close()
        self.http.close()
        if self.events_catalog is not None:
            self.events_catalog.close()
        self.catalog.close()
        bound.cancel()
        log.info("run: stopped")
        return 0


def _hard_exit(bound: float) -> None:
    log.error("run: shutdown took longer than %.0f s; exiting now (state as of the last commit)", bound)
    logging.shutdown()
    os._exit(1)


def _now_dt():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
