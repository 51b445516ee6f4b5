"""The daemon's status page (``/status`` on the metrics address, issue 17 item 5).

Live: ``eqt-monitor run`` against ``eqt-monitor simulate`` on salton_sea_2020 (the harness of
tests/test_daemon.py); the page lists every configured station, its latency and last-data figures
equal ``/metrics`` (within the time between the two requests), ``/metrics`` and ``/healthz`` are
as before, and a real headless Chromium (Debian's ``chromium``) screenshots it. In-process: the
page renders with an empty catalog, a station without data and a station without coordinates.
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest

from daemon_harness import daemon, free_port, scrape, simulate, total, wait_for, write_config
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import MonitorConfig, StationConfig, load_config
from eqt_monitor.live import metrics
from eqt_monitor.live.status import gather
from eqt_monitor.records import StationKey
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from test_daemon import SALTON_T0, _scrape_or_none

QUIET = '  - {network: CI, station: QUIET, channels: "HH?", latitude: 33.2, longitude: -115.6}\n'


def fetch(url: str) -> tuple[int, str, str, str]:
    """GET ``url``: (status, content type, body, final URL after redirects)."""
    with urllib.request.urlopen(url, timeout=20) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read().decode(), resp.url


def station_cells(page: str) -> dict[str, dict[str, str]]:
    """``{station id: {cell class: text}}`` of the page's station table."""
    rows = {}
    for sid, body in re.findall(r'<tr id="station-([^"]+)" class="station">(.*?)</tr>', page, re.S):
        cells = dict(re.findall(r'<td class="([a-z-]+)">(.*?)</td>', body, re.S))
        rows[html.unescape(sid)] = {k: re.sub(r"<[^>]+>", "", v).strip() for k, v in cells.items()}
        rows[html.unescape(sid)]["state"] = re.search(r'class="state [a-z-]+">([^<]+)<', body).group(1)
    return rows


def posix(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


def records_still(port: int) -> bool:
    """No record arrived at the daemon within 2 s."""
    before = total(scrape(port)[1], "eqt_monitor_records_received_total")
    time.sleep(2)
    return total(scrape(port)[1], "eqt_monitor_records_received_total") == before


def screenshot(url: str, png) -> None:
    """A real headless Chromium's screenshot of ``url`` (skips when Debian's chromium is not installed)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium) for the browser test")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png}", "--window-size=1280,2000", url],
                   check=True, timeout=120, capture_output=True)


def assert_not_blank(png) -> None:
    from PIL import Image

    assert png.exists() and png.stat().st_size > 10_000
    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) >= 8, f"{png}: {len(colours)} colours, looks blank"


@pytest.mark.slow
def test_status_page_of_a_live_salton_run_equals_metrics_and_renders_in_chromium(shared, original_weights, tmp_path,
                                                                                  capsys):
    inventory = shared / "data/salton_sea_2020/stations.xml"
    archive = f"file://{shared}/data/salton_sea_2020/mseed"
    config_path = write_config(tmp_path, f"  - inventory: {inventory}\n{QUIET}", original_weights,
                               "metrics:\n  serve_events: true\n")
    stations = [s.key.id for s in load_config(config_path).stations]
    assert len(stations) == 17
    port, mport = free_port(), free_port()
    base = f"http://127.0.0.1:{mport}"
    run = daemon(config_path, f"seedlink://127.0.0.1:{port}", mport, tmp_path / "run.log", SALTON_T0,
                 "--silent-after", "20")  # QUIET, which never sends, turns silent and association goes on
    server = None
    try:
        wait_for(lambda: _scrape_or_none(mport), 120, "the daemon's metrics endpoint")
        status, ctype, page, final = fetch(base + "/")  # before any data: empty catalog, no station has data
        assert (status, final) == (200, base + "/status") and ctype.startswith("text/html")
        rows = station_cells(page)
        assert sorted(rows) == sorted(stations)
        assert all(r["latency"] == "—" and r["state"] in ("no data", "silent") for r in rows.values())
        assert "No events yet." in page and "No picks yet." in page

        server = simulate(archive, port, 20, tmp_path / "simulate.log")
        wait_for(lambda: "all data up to" in server.text(), 120, "the simulator to release all data")
        wait_for(lambda: total(scrape(mport)[1], "eqt_monitor_picks_total") > 20, 120, "picks")
        wait_for(lambda: total(scrape(mport)[1], "eqt_monitor_events_total") > 0, 180, "an associated event")
        wait_for(lambda: records_still(mport), 60, "data to stop arriving")
        t1 = time.time()
        names, values = scrape(mport)
        t2 = time.time()
        status, ctype, page, _ = fetch(base + "/status")
        t3 = time.time()
        assert status == 200
        rows = station_cells(page)
        assert sorted(rows) == sorted(stations), "every configured station on the page"
        compared = 0
        for sid, row in rows.items():
            latency = values.get(f'eqt_monitor_data_latency_seconds{{station="{sid}"}}')
            if latency is None:
                assert sid == "CI.QUIET." and row["latency"] == "—" and row["last-data"] == "—"
                assert row["state"] == "silent" and 'class="station-silent"' in page
                continue
            # the page was made after the scrape, with no data arriving in between: its latency is the
            # scrape's plus at most the time between the two requests (and the page's 0.1 s rounding)
            assert -0.06 <= float(row["latency"]) - latency <= t3 - t1 + 0.06, (sid, row["latency"], latency)
            assert abs(posix(row["last-data"]) - (t1 - latency)) <= t2 - t1 + 0.11, (sid, row["last-data"])
            assert float(row["records"]) == values[f'eqt_monitor_records_received_total{{station="{sid}"}}']
            fill = values.get(f'eqt_monitor_buffer_fill_ratio{{station="{sid}"}}')
            assert row["fill"] == ("—" if fill is None else f"{fill:.2f}")
            # silent 20 s after its last data: as /metrics said, or turned silent between the two requests
            silent = values[f'eqt_monitor_station_silent{{station="{sid}"}}'] == 1.0
            assert row["state"] in (("silent",) if silent else ("ok", "silent")), (sid, row["state"], silent)
            compared += 1
        assert compared == 16
        assert sum(row["last-pick"] != "—" for row in rows.values()) >= 5
        assert 'id="picks"' in page and 'id="map"' in page and page.count("<polygon") == 17
        assert 'id="events"' in page and '<circle class="event"' in page
        assert "detection threshold" in page and "original" in page
        # /metrics and /healthz as before
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
        assert "eqt_monitor_data_latency_seconds" in names
        status, ctype, body, _ = fetch(base + "/healthz")
        assert status == 200 and body.startswith("ok") and ctype.startswith("text/plain")
        # metrics.serve_events: the FDSN event service on the same address, over the daemon's catalog

        def events_served() -> list[str] | None:
            """The event ids the service answers, once they are the catalog's (association may still commit)."""
            _, _, text, _ = fetch(base + "/fdsnws/event/1/query?format=text&orderby=time-asc")
            with Catalog(tmp_path / "catalog.sqlite") as stored:
                ids = [e.id for e in stored.events()]
            served = [line.split("|")[0] for line in text.splitlines()[1:]]
            return served if served == ids else None

        assert wait_for(events_served, 30, "the event service to answer the catalog's events")

        png = tmp_path / "status.png"
        screenshot(base + "/status", png)
        assert_not_blank(png)
        with capsys.disabled():
            print(f"\nstatus page screenshot: {png}")
    finally:
        run.stop()
        if server is not None:
            server.stop()


def test_status_page_with_an_empty_catalog_and_stations_without_data_or_coordinates(tmp_path):
    config = MonitorConfig(path=None, stations=[
        StationConfig(StationKey("XX", "NODATA", "", "HH"), latitude=33.1, longitude=-115.7),
        StationConfig(StationKey("XX", "NOCOORD", "", "HH")),
        StationConfig(StationKey("XX", "FLOWS", "", "HH"), latitude=33.3, longitude=-115.5)])
    metrics.observe_data("XX.FLOWS.", 100, time.time() - 3.0)
    keys = [s.key for s in config.stations]
    with Catalog(tmp_path / "catalog.sqlite") as catalog, \
            metrics.serve("127.0.0.1:0", health=lambda: (False, "catalog not writable"),
                          page=lambda: gather(config, catalog, keys)) as srv:
        status, ctype, page, _ = fetch(srv.url + "/status")
        assert status == 200 and ctype.startswith("text/html")
        rows = station_cells(page)
        assert sorted(rows) == ["XX.FLOWS.", "XX.NOCOORD.", "XX.NODATA."]
        assert rows["XX.NODATA."]["latency"] == "—" and rows["XX.NODATA."]["last-pick"] == "—"
        assert 2.9 <= float(rows["XX.FLOWS."]["latency"]) < 30
        assert "No events yet." in page and "No picks yet." in page and "catalog not writable" in page
        assert page.count("<polygon") == 2  # the station without coordinates is listed, not mapped
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            fetch(srv.url + "/healthz")
        assert unhealthy.value.code == 503
    metrics.forget_station("XX.FLOWS.")
    with metrics.serve("127.0.0.1:0") as srv:  # no page given: /metrics and /healthz only
        with pytest.raises(urllib.error.HTTPError) as missing:
            fetch(srv.url + "/status")
        assert missing.value.code == 404
