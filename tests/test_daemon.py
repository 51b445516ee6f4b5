"""``eqt-monitor run`` against ``eqt-monitor simulate`` on 127.0.0.1, with real data from ../shared.

The daemon and the simulator run as subprocesses, so SIGTERM and SIGKILL are real. What the
daemon writes is compared with ``replay`` over the same archive: live picks equal replay's up to
the time each station is settled (the daemon never ends a stretch, so it holds back the last
minute of data, which replay, at the end of the archive, does pick).
"""
from __future__ import annotations

import csv
import dataclasses
import signal
import socket
import threading
import time

import obspy
import pytest

from daemon_harness import (ROOT, daemon, free_port, scrape, settled, simulate, station_entries, total, wait_for,
                            write_config)
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.cli import main
from eqt_monitor.config import load_config
from eqt_monitor.events.live import LiveAssociator
from eqt_monitor.pipeline.engine import CONTEXT_S
from eqt_monitor.replay import replay
from eqt_monitor.sim import server as sim_server
from fdsn_server import build_index, dataselect_server
from test_replay import assert_same_picks

pytestmark = pytest.mark.slow

T = lambda s: obspy.UTCDateTime(s).timestamp  # noqa: E731
SALTON_T0 = "2020-10-01T00:00:00"

# every metric of issue 5 item 5 (counters and histograms by their exposed family name)
METRICS = [
    "eqt_monitor_records_received", "eqt_monitor_samples_received", "eqt_monitor_gaps", "eqt_monitor_overlaps",
    "eqt_monitor_data_latency_seconds", "eqt_monitor_buffer_fill_ratio", "eqt_monitor_windows_predicted",
    "eqt_monitor_inference_batch_size", "eqt_monitor_inference_seconds", "eqt_monitor_pick_latency_seconds",
    "eqt_monitor_picks", "eqt_monitor_detections", "eqt_monitor_events", "eqt_monitor_association_seconds",
    "eqt_monitor_reconnects", "eqt_monitor_errors", "eqt_monitor_model", "eqt_monitor_station_silent",
]
FLOWING = ["eqt_monitor_records_received_total", "eqt_monitor_samples_received_total",
           "eqt_monitor_windows_predicted_total", "eqt_monitor_inference_batch_size_count",
           "eqt_monitor_inference_seconds_count", "eqt_monitor_pick_latency_seconds_count", "eqt_monitor_picks_total",
           "eqt_monitor_detections_total"]


@pytest.fixture(scope="module")
def model(original_weights):
    from eqt_monitor.model.load import load_model

    return load_model("original", original_weights)


def replay_settled_picks(model, config, start, end, source, until: dict[str, float]):
    """Replay's picks over the span, up to each station's settled time ``until`` (what live must equal)."""
    picks = replay(config, start=start, end=end, predict_fn=model.predict, model_name="original",
                   weights_sha256=model.weights_sha256, source=source, progress=False)[1]
    return [p for p in picks if p.time < until[p.station.id]]


def sigterm(run, db) -> dict[str, float]:
    """Stop the daemon as systemd does; it must exit 0 within 30 s. Returns the progress it left."""
    run.signal(signal.SIGTERM)
    assert run.wait(30) == 0
    return settled(db)


def wait_settled_stable(db, stations: int, beyond: float, seconds: float, timeout: float) -> dict[str, float]:
    """Wait until ``stations`` stations have progress past ``beyond`` and it has not moved for
    ``seconds`` (the first condition keeps a daemon slowed down by a busy machine from looking done)."""
    last, since = None, time.monotonic()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        now = settled(db)
        if now != last:
            last, since = now, time.monotonic()
        elif (len(now) >= stations and min(now.values()) > beyond
              and time.monotonic() - since >= seconds):
            return now
        time.sleep(0.5)
    raise AssertionError(f"progress did not settle within {timeout} s: {last}")


def settle_and_stop(run, server, db, released, stations: int, beyond: float) -> tuple[dict[str, float], dict]:
    """Once ``released()`` (the simulator sent everything) and progress settled past ``beyond``:
    the metrics, then SIGTERM; returns (final progress, metrics). Both processes end either way."""
    try:
        wait_for(released, 180, "the simulator to release all data")
        wait_settled_stable(db, stations, beyond, 6, 180)
        values = scrape(run.metrics_port)[1]
        return sigterm(run, db), values
    finally:
        run.stop()
        server.stop()


def assert_live_catalog_plots_and_exports_alone(db, source: str, tmp_path) -> None:
    """The daemon's run record: ``plot`` finds the source (and the settings) without ``--source``,
    and the EqT CSV has every station's coordinates."""
    with Catalog(db) as catalog:
        run_record, events = catalog.last_run(), catalog.events()
    assert run_record.source == source and run_record.settings["live"] and "buffer" in run_record.settings
    assert events
    png = tmp_path / "live_event.png"
    assert main(["plot", events[0].short_id, "--db", str(db), "--out", str(png)]) == 0 and png.stat().st_size > 10_000
    out = tmp_path / "picks.csv"
    assert main(["export", "--db", str(db), "--format", "eqt-csv", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows and all(r["station_lat"] and r["station_lon"] for r in rows)


def test_live_equals_replay_with_metrics_silent_station_and_sigterm(shared, original_weights, model, tmp_path):
    inventory = shared / "data/salton_sea_2020/stations.xml"
    archive = f"file://{shared}/data/salton_sea_2020/mseed"
    quiet = '  - {network: CI, station: QUIET, channels: "HH?", latitude: 33.2, longitude: -115.6}\n'
    config_path = write_config(tmp_path, f"  - inventory: {inventory}\n{quiet}", original_weights)
    port, mport = free_port(), free_port()
    server = simulate(archive, port, 20, tmp_path / "simulate.log")
    run = daemon(config_path, f"seedlink://127.0.0.1:{port}", mport, tmp_path / "run.log", SALTON_T0,
                 "--silent-after", "5")
    try:
        db = tmp_path / "catalog.sqlite"
        wait_for(lambda: "all data up to" in server.text(), 120, "the simulator to release all data")
        silent = 'eqt_monitor_station_silent{station="CI.QUIET."}'
        wait_for(lambda: (_scrape_or_none(mport) or (None, {}))[1].get(silent) == 1.0, 60,
                 "the silent station to be flagged")
        wait_settled_stable(db, 16, T(SALTON_T0) + 90, 6, 180)
        names, values = scrape(mport)
        missing = [m for m in METRICS if not any(n == m or n in (m + "_total", m + "_info") for n in names)]
        assert not missing, missing
        for name in FLOWING:
            assert total(values, name) > 0, name
        assert total(values, "eqt_monitor_records_received_total") >= 16 * 3 * 180 * 100 / 1000  # ≥ 1000 samples/record
        assert 0 <= values['eqt_monitor_buffer_fill_ratio{station="CI.BOM."}'] <= 1
        assert 0 < values["eqt_monitor_pick_latency_seconds_sum"] / values["eqt_monitor_pick_latency_seconds_count"] < 30
        assert 'name="original"' in next(k for k in values if k.startswith("eqt_monitor_model_info"))
        assert "station CI.QUIET..HH?: no data for" in run.text()
        t0 = time.monotonic()
        final = sigterm(run, db)  # as the drain at SIGTERM left it
        assert time.monotonic() - t0 < 30
        assert_live_catalog_plots_and_exports_alone(db, f"seedlink://127.0.0.1:{port}", tmp_path)
    finally:
        run.stop()
        server.stop()

    config = load_config(config_path)
    expected = replay_settled_picks(model, config, T(SALTON_T0), T(SALTON_T0) + 300, archive, final)
    with Catalog(db) as catalog:
        live = catalog.picks()
        events = catalog.events()
    assert len({p.station for p in live}) >= 10 and len(live) >= 50
    assert_same_picks(live, expected)
    assert_events_of_one_clean_association(events, config, expected, final)
    quakeml = obspy.read_events(str(tmp_path / "state" / "events.xml"))
    assert sorted(e.origins[0].time.timestamp for e in quakeml) == pytest.approx(
        sorted(e.origin.time for e in events), abs=1e-3)


def test_server_restarts_and_sigkill_lose_and_duplicate_nothing(shared, original_weights, model, tmp_path, sds):
    """chile_2014, 30 min at 60x: the simulator is killed and restarted 3 times while streaming and
    the daemon is SIGKILLed once and restarted; the catalog ends with exactly the picks of replay
    (up to each station's settled time) and the events of one clean association over them."""
    config = load_config(ROOT / "stations.yaml")
    config_path = write_config(tmp_path, station_entries(config), original_weights)
    source, start, end = f"sds://{sds}", "2014-05-01T00:00:00", "2014-05-01T00:30:00"
    port, mport = free_port(), free_port()
    db = tmp_path / "catalog.sqlite"
    run = daemon(config_path, f"seedlink://127.0.0.1:{port}", mport, tmp_path / "run.log", start)
    wait_for(lambda: _scrape_or_none(mport), 120, "the daemon's metrics endpoint")  # model loaded: stream now
    server = simulate(source, port, SPEED, tmp_path / "simulate.log", start, end)
    try:
        for restart in range(3):
            records = total(scrape(mport)[1], "eqt_monitor_records_received_total")
            wait_for(lambda: total(scrape(mport)[1], "eqt_monitor_records_received_total") > records + 20, 60,
                     f"data to flow before server restart {restart + 1}")
            server.signal(signal.SIGKILL)
            server.wait(10)
            server = simulate(source, port, SPEED, tmp_path / "simulate.log", start, end)
        wait_for(lambda: min(settled(db).values(), default=0) > T(start) + 400, 120, "progress past 400 s")
        reconnects = total(scrape(mport)[1], "eqt_monitor_reconnects_total")
        run.signal(signal.SIGKILL)
        run.wait(10)
        assert "seedlink-127.0.0.1" in "".join(p.name for p in (tmp_path / "state").iterdir())
        before = settled(db)
        run = daemon(config_path, f"seedlink://127.0.0.1:{port}", mport, tmp_path / "run.log", start)
        wait_for(lambda: _scrape_or_none(mport), 120, "the restarted daemon's metrics endpoint")
        wait_for(lambda: "all data up to" in server.text(), 180, "the simulator to release all data")
        wait_for(lambda: settled(db) != before, 60, "the restarted daemon to make progress")
        wait_settled_stable(db, 2, T(end) - 200, 6, 180)
        final = sigterm(run, db)
    finally:
        run.stop()
        server.stop()
    assert reconnects >= 3  # each server restart was a reconnect
    assert min(final.values()) > T(end) - 200
    # the archive goes on before `start`: replay's first windows see earlier data, the stream's do not
    from_ = T(start) + CONTEXT_S
    expected = [p for p in replay_settled_picks(model, config, T(start), T(end), source, final) if p.time >= from_]
    with Catalog(db) as catalog:
        live, events = catalog.picks(), catalog.events()
    assert expected, "the half hour has picks"
    assert_same_picks([p for p in live if p.time >= from_], expected)
    assert_events_of_one_clean_association(events, config, live, final)


def assert_events_of_one_clean_association(events, config, picks, final):
    """The daemon's events (committed over many slices, across restarts) are those of one
    association of the same picks up to the same horizon: none lost, split or written twice."""
    clean = LiveAssociator(config.coordinates(), config.association)
    clean.feed(picks)
    reference = clean.advance(min(final.values()))
    key = lambda e: (round(e.origin.time, 3), sorted((a.pick.station.id, a.pick.phase) for a in e.arrivals))  # noqa: E731
    assert sorted(map(key, events)) == sorted(map(key, reference))


SPEED = 60


def _corrupting(archive_records, station: str):
    """``sim.server.archive_records`` with every 10th record of ``station`` zeroed after its
    header, as a damaged record on the wire (libmseed refuses to decode it)."""
    def corrupted(*args, **kwargs):
        count = 0
        for chunk_end, records in archive_records(*args, **kwargs):
            out = []
            for rec in records:
                if rec.station == station:
                    count += 1
                    if count % 10 == 0:
                        rec = dataclasses.replace(rec, data=rec.data[:64] + bytes(len(rec.data) - 64))
                out.append(rec)
            yield chunk_end, out
    return corrupted


def _read_all(sock: socket.socket, into: list[str]) -> None:
    """Collect datagrams (as systemd does) until the socket is closed."""
    while True:
        try:
            into.append(sock.recv(4096).decode())
        except OSError:
            return


def _scrape_or_none(port):
    try:
        return scrape(port)
    except OSError:
        return None


def test_bad_stations_get_a_metric_and_a_log_line_and_leave_the_good_one_alone(shared, original_weights, model,
                                                                                tmp_path, sds, monkeypatch):
    """chile_2014, 25 min: CX.PB01 as recorded beside four copies of CX.PB02 that go wrong at
    8 min: XX.RATE switches to 50 Hz, XX.GAP loses 10 minutes, XX.JUMP's clock jumps back 20 s,
    and every 10th record of XX.CORR is corrupt on the wire (the simulator runs in-process here
    to corrupt it). Each gets its metric and a log line naming it; PB01's picks are replay's."""
    start, end = T("2014-05-01T00:00:00"), T("2014-05-01T00:25:00")
    st = obspy.read(str(sds / "2014/CX/*/HH?.D/*.121"), starttime=obspy.UTCDateTime(start),
                    endtime=obspy.UTCDateTime(end) - 0.005)
    st.merge(method=1, fill_value=0)
    folder = tmp_path / "mseed"
    folder.mkdir()
    st.select(station="PB01").write(str(folder / "PB01.mseed"), format="MSEED", reclen=512)
    cut = obspy.UTCDateTime(start + 480)
    for code in ("RATE", "GAP", "JUMP", "CORR"):
        bad = st.select(station="PB02").copy()
        for tr in bad:
            tr.stats.network, tr.stats.station = "XX", code
        before, after = bad.slice(endtime=cut - 0.005), bad.slice(starttime=cut)
        if code == "RATE":
            after.decimate(2, no_filter=True)
        elif code == "GAP":
            after.trim(starttime=cut + 600)
        elif code == "JUMP":
            for tr in after:
                tr.stats.starttime -= 20
        (before + after).write(str(folder / f"{code}.mseed"), format="MSEED", reclen=512)
    stations = '  - {network: CX, station: PB01, channels: "HH?"}\n' + "".join(
        f'  - {{network: XX, station: {c}, channels: "HH?"}}\n' for c in ("RATE", "GAP", "JUMP", "CORR"))
    config_path = write_config(tmp_path, stations, original_weights)
    port, mport = free_port(), free_port()
    db = tmp_path / "catalog.sqlite"
    run = daemon(config_path, f"seedlink://127.0.0.1:{port}", mport, tmp_path / "run.log", "2014-05-01T00:00:00")
    wait_for(lambda: _scrape_or_none(mport), 120, "the daemon's metrics endpoint")
    monkeypatch.setattr(sim_server, "archive_records", _corrupting(sim_server.archive_records, "CORR"))
    server = sim_server.SeedLinkServer(f"file://{folder}", port=port, speed=2 * SPEED).start()
    final, values = settle_and_stop(run, server, db, lambda: server.log.finished, 5, end - 300)
    log = run.text()
    assert values['eqt_monitor_errors_total{kind="rate_change"}'] >= 1
    assert "station XX.RATE..HH?: XX.RATE..HH" in log and "changed sampling rate from 100 to 50 Hz" in log
    assert values['eqt_monitor_gaps_total{station="XX.GAP."}'] >= 1
    assert "station XX.GAP..HH?: 600.0 s gap in every component ends the stretch" in log
    assert values['eqt_monitor_overlaps_total{station="XX.JUMP."}'] >= 1
    lines = log.count("station XX.JUMP..HH?: data repeats what was already received (overlap or clock jump backwards)")
    assert 1 <= lines < values['eqt_monitor_overlaps_total{station="XX.JUMP."}']  # a line per episode, not per record
    assert values['eqt_monitor_errors_total{kind="seedlink_decode"}'] >= 10
    assert "undecodable record dropped" in log and "XX_CORR__HH" in log
    assert not any(k.startswith("eqt_monitor_gaps_total") and "CX.PB01" in k and v for k, v in values.items())
    config = load_config(config_path)
    good = [s for s in config.stations if s.key.station == "PB01"]
    from dataclasses import replace

    expected = replay_settled_picks(model, replace(config, stations=good), start, end, f"file://{folder}", final)
    with Catalog(db) as catalog:
        live = catalog.picks(stations=[good[0].key])
    assert expected
    assert_same_picks(live, expected)


def test_fdsn_polling_and_sighup_reload(shared, original_weights, model, tmp_path):
    """Salton Sea from a real FDSN dataselect server, polled every 2 s: eight stations first, then
    SIGHUP with a config that drops two and adds six. The kept stations go on undisturbed, the
    added ones are polled from --begin, and every final station's picks are replay's. Started as
    systemd would (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``), it reports READY, WATCHDOG and STOPPING."""
    files = sorted((shared / "data/salton_sea_2020/mseed").iterdir())
    inventory = obspy.read_inventory(str(shared / "data/salton_sea_2020/stations.xml"))
    codes = sorted({sta.code for net in inventory for sta in net})
    assert len(codes) == 16

    def entries(chosen):
        return "".join(f'  - {{network: CI, station: {c}, channels: "HH?"}}\n' for c in chosen)

    first, second = codes[:8], codes[2:14]
    config_path = write_config(tmp_path, entries(first), original_weights)
    build_index(files, tmp_path / "index.sqlite")
    mport = free_port()
    db = tmp_path / "catalog.sqlite"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    messages: list[str] = []
    threading.Thread(target=lambda: _read_all(notify, messages), daemon=True).start()
    systemd = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000000"}
    with dataselect_server(tmp_path / "index.sqlite", tmp_path) as address:
        run = daemon(config_path, f"fdsn://{address}", mport, tmp_path / "run.log", SALTON_T0,
                     "--poll-interval", "2", env=systemd)
        try:
            wait_settled_stable(db, 8, T(SALTON_T0) + 90, 5, 180)
            kept_before = {k: v for k, v in settled(db).items() if k.split(".")[1] in second}
            config_path.write_text(config_path.read_text().replace(entries(first), entries(second)))
            run.signal(signal.SIGHUP)
            wait_for(lambda: "reload: 6 station(s) added, 2 removed, 6 kept" in run.text(), 30, "the reload line")
            wait_settled_stable(db, 14, T(SALTON_T0) + 90, 5, 180)
            values = scrape(mport)[1]
            final = sigterm(run, db)
        finally:
            run.stop()
    notify.close()
    assert messages[0].startswith("READY=1\nSTATUS=monitoring 8 stations")
    assert "WATCHDOG=1" in messages and messages[-1] == "STOPPING=1"
    assert not any("CI." + c + "." in k for c in codes[:2] for k in values if k.startswith("eqt_monitor_records"))
    assert all(final[k] == v for k, v in kept_before.items())  # polled everything already: nothing re-read
    assert "overlap" not in run.text()
    config = load_config(config_path)
    archive = f"file://{shared}/data/salton_sea_2020/mseed"
    expected = replay_settled_picks(model, config, T(SALTON_T0), T(SALTON_T0) + 300, archive, final)
    with Catalog(db) as catalog:
        live = catalog.picks(stations=[s.key for s in config.stations])
    assert len({p.station for p in live}) >= 8
    assert_same_picks(live, expected)
