"""metrics.py over real HTTP on 127.0.0.1: every metric named in issue 5 is exposed with its unit,
values follow what was observed, /healthz follows the health callable."""
from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eqt_monitor.errors import UserError
from eqt_monitor.live import metrics

# name (as exposed, without _total/_bucket suffixes) -> Prometheus type
EXPECTED = {
    "eqt_monitor_records_received": "counter",
    "eqt_monitor_samples_received": "counter",
    "eqt_monitor_gaps": "counter",
    "eqt_monitor_overlaps": "counter",
    "eqt_monitor_data_latency_seconds": "gauge",
    "eqt_monitor_buffer_fill_ratio": "gauge",
    "eqt_monitor_windows_predicted": "counter",
    "eqt_monitor_inference_batch_size": "histogram",
    "eqt_monitor_inference_seconds": "histogram",
    "eqt_monitor_pick_latency_seconds": "histogram",
    "eqt_monitor_picks": "counter",
    "eqt_monitor_detections": "counter",
    "eqt_monitor_events": "counter",
    "eqt_monitor_association_seconds": "histogram",
    "eqt_monitor_reconnects": "counter",
    "eqt_monitor_errors": "counter",
    "eqt_monitor_model_info": "gauge",  # Info metrics are gauges in the text format
}


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(server: metrics.MetricsServer) -> dict[str, object]:
    status, ctype, body = get(server.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body)}


def sample(families: dict, family: str, name: str, /, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {name}{labels}")


@pytest.fixture
def server():
    state = {"ok": True, "detail": "3 stations streaming"}
    srv = metrics.serve("127.0.0.1:0", health=lambda: (state["ok"], state["detail"]))
    srv.state = state
    yield srv
    srv.close()


def test_every_issue_metric_is_exposed_with_its_type_and_values(server):
    station = "CX.PB01."
    before = scrape(server)
    metrics.observe_data(station, 700, time.time() - 100.0)
    metrics.observe_data(station, 300, time.time() - 1000.0)  # late older data must not raise the latency
    metrics.GAPS.labels(station=station).inc()
    metrics.OVERLAPS.labels(station=station).inc(2)
    metrics.BUFFER_FILL.labels(station=station).set(0.25)
    metrics.WINDOWS_PREDICTED.inc(64)
    metrics.INFERENCE_BATCH_SIZE.observe(64)
    metrics.INFERENCE_SECONDS.observe(0.8)
    metrics.PICK_LATENCY.observe(12.0)
    metrics.PICKS.labels(phase="P").inc(3)
    metrics.PICKS.labels(phase="S").inc()
    metrics.DETECTIONS.inc(2)
    metrics.EVENTS.inc()
    metrics.ASSOCIATION_SECONDS.observe(0.3)
    metrics.RECONNECTS.labels(source="seedlink://127.0.0.1:18000").inc()
    metrics.ERRORS.labels(kind="connect").inc()
    metrics.set_model_info("original", "07b3ffc8" + "0" * 56, "tensorflow")

    after = scrape(server)
    for name, kind in EXPECTED.items():
        assert name in after, f"{name} missing from /metrics"
        assert after[name].type == kind, (name, after[name].type)
    prev = {name: (sample(before, name, name + "_total", station=station) if name in before and any(
        s.labels.get("station") == station for s in before[name].samples) else 0.0)
        for name in ("eqt_monitor_records_received", "eqt_monitor_samples_received")}
    assert sample(after, "eqt_monitor_records_received", "eqt_monitor_records_received_total",
                  station=station) - prev["eqt_monitor_records_received"] == 2
    assert sample(after, "eqt_monitor_samples_received", "eqt_monitor_samples_received_total",
                  station=station) - prev["eqt_monitor_samples_received"] == 1000
    latency = sample(after, "eqt_monitor_data_latency_seconds", "eqt_monitor_data_latency_seconds", station=station)
    assert 100.0 <= latency < 1000.0  # the newest sample was 100 s old when observed
    assert sample(after, "eqt_monitor_buffer_fill_ratio", "eqt_monitor_buffer_fill_ratio", station=station) == 0.25
    assert sample(after, "eqt_monitor_picks", "eqt_monitor_picks_total", phase="P") >= 3
    assert sample(after, "eqt_monitor_inference_batch_size", "eqt_monitor_inference_batch_size_bucket", le="64.0") >= 1
    assert sample(after, "eqt_monitor_inference_batch_size", "eqt_monitor_inference_batch_size_bucket", le="32.0") == \
        sample(before, "eqt_monitor_inference_batch_size", "eqt_monitor_inference_batch_size_bucket", le="32.0")
    assert sample(after, "eqt_monitor_model_info", "eqt_monitor_model_info", name="original",
                  backend="tensorflow") == 1.0


def test_forget_station_drops_its_series(server):
    metrics.observe_data("XX.GONE.", 10, time.time())
    metrics.BUFFER_FILL.labels(station="XX.GONE.").set(0.5)
    assert 'station="XX.GONE."' in get(server.url + "/metrics")[2]
    metrics.forget_station("XX.GONE.")
    assert 'station="XX.GONE."' not in get(server.url + "/metrics")[2]


def test_healthz_follows_the_health_callable(server):
    assert get(server.url + "/healthz")[::2] == (200, "3 stations streaming\n")
    server.state.update(ok=False, detail="no data from CX.PB02. for 600 s")
    assert get(server.url + "/healthz")[::2] == (503, "no data from CX.PB02. for 600 s\n")
    assert get(server.url + "/nope")[0] == 404


def test_failing_health_check_is_a_503_not_a_crash():
    def broken() -> bool:
        raise RuntimeError("catalog locked")

    with metrics.serve("127.0.0.1:0", health=broken) as srv:
        status, _, body = get(srv.url + "/healthz")
        assert status == 503 and "catalog locked" in body
        assert get(srv.url + "/metrics")[0] == 200


def test_default_address_is_loopback_and_bad_addresses_are_one_line_errors():
    assert metrics.DEFAULT_ADDR.startswith("127.0.0.1:")
    for bad in ("9108", "localhost:", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(UserError, match="expected HOST:PORT"):
            metrics.serve(bad)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(UserError, match="cannot listen"):
            metrics.serve(f"127.0.0.1:{taken.getsockname()[1]}")
