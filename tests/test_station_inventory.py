"""Station metadata on real data: the inventory from an FDSN station service (cached, used when the
service is down) and horizontals oriented by the inventory's azimuths.

Four SCSN stations of the Salton Sea swarm, 2020-10-01 00:00-00:03 UTC.
"""
from __future__ import annotations

import io
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import obspy
import pytest

from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import load_config
from eqt_monitor.errors import ConfigError

pytestmark = pytest.mark.slow

START = obspy.UTCDateTime("2020-10-01T00:00:00").timestamp
END = START + 180.0
STATIONS = ("BOM", "COA", "ERR", "IMP")
ANGLE = 30.0  # degrees the horizontals are turned by: HH1 at 30°, HH2 at 120°


class _StationService(BaseHTTPRequestHandler):
    """A minimal FDSN station service answering from one inventory (filtered by network/station)."""

    inventory: obspy.Inventory

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        if url.path == "/fdsnws/station/1/version":
            return self._answer(200, b"1.1.0", "text/plain")
        if url.path != "/fdsnws/station/1/query":
            return self._answer(404, b"not found", "text/plain")
        query = dict(parse_qsl(url.query))
        found = _select(self.inventory, query.get("network", "*"), query.get("station", "*"))
        if not found.networks:
            return self._answer(204, b"", "text/plain")
        body = io.BytesIO()
        found.write(body, format="STATIONXML")
        self._answer(200, body.getvalue(), "application/xml")

    def _answer(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def salton(shared: Path) -> Path:
    return shared / "data" / "salton_sea_2020"


@pytest.fixture(scope="module")
def inventory(salton: Path) -> obspy.Inventory:
    return _select(obspy.read_inventory(str(salton / "stations.xml")), "CI", ",".join(STATIONS))


def _select(inventory: obspy.Inventory, network: str, stations: str) -> obspy.Inventory:
    """The stations of a comma-separated list (as a station service reads ``station=``)."""
    found = obspy.Inventory(networks=[], source="test")
    for station in stations.split(","):
        for net in inventory.select(network=network, station=station):
            found.networks.append(net)
    return found


@pytest.fixture(scope="module")
def model(original_weights):
    from eqt_monitor.model.load import load_model

    return load_model("original", original_weights)


def _serve(inventory: obspy.Inventory) -> ThreadingHTTPServer:
    handler = type("Handler", (_StationService,), {"inventory": inventory})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _write_config(folder: Path, inventory: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "stations.yaml"
    path.write_text(f"source: {source}\nstate_dir: state\nstations:\n  - inventory: {inventory}\n")
    return path


def _picks(config_path: Path, model, db: Path) -> list[tuple[str, str, float, float]]:
    from eqt_monitor.replay import replay

    config = load_config(config_path)
    with Catalog(db) as catalog:
        replay(config, start=START, end=END, predict_fn=model.predict, model_name="original",
               weights_sha256=model.weights_sha256, catalog=catalog, progress=False)
        return sorted((str(p.station), p.phase, p.time, p.probability) for p in catalog.picks())


@pytest.fixture(scope="module")
def local(salton, inventory, model, tmp_path_factory) -> list:
    """Picks of the replay with the inventory as a local StationXML file (the reference)."""
    folder = tmp_path_factory.mktemp("local")
    inventory.write(str(folder / "stations.xml"), format="STATIONXML")
    config = _write_config(folder, str(folder / "stations.xml"), f"file://{salton}/mseed/*.mseed")
    picks = _picks(config, model, folder / "catalog.sqlite")
    assert len(picks) >= 8
    return picks


def test_inventory_from_a_station_service_equals_the_local_file_and_outlives_the_service(
        salton, inventory, model, local, tmp_path, caplog):
    server = _serve(inventory)
    uri = f"fdsn://127.0.0.1:{server.server_address[1]}?network=CI&station={','.join(STATIONS)}"
    config = _write_config(tmp_path, uri, f"file://{salton}/mseed/*.mseed")
    try:
        assert _picks(config, model, tmp_path / "catalog.sqlite") == local
        fetched = load_config(config)
    finally:
        server.shutdown()
        server.server_close()
    cached = list((tmp_path / "state").glob("inventory-*.xml"))
    assert len(cached) == 1 and cached[0].with_suffix(".json").is_file()

    class Count:
        errors: list[str] = []

        def error(self, kind: str, n: int = 1) -> None:
            self.errors.append(kind)

    recorder = Count()
    with caplog.at_level(logging.WARNING):
        down = load_config(config, recorder=recorder)  # the service is gone: the cache serves
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and uri in warnings[0] and "fetched 20" in warnings[0], warnings
    assert recorder.errors == ["inventory_fetch"]
    assert down.stations == fetched.stations and down.inventories == fetched.inventories

    fresh = _write_config(tmp_path / "fresh", uri, f"file://{salton}/mseed/*.mseed")
    with pytest.raises(ConfigError) as exc:
        load_config(fresh)
    message = str(exc.value)
    assert "\n" not in message and uri in message and "no cached copy" in message, message



@pytest.mark.parametrize("sidecar", ["missing", "corrupt"])
def test_a_cached_inventory_without_a_usable_sidecar_is_still_used_when_the_service_is_down(
        inventory, tmp_path, caplog, sidecar):
    """The sidecar only says when the copy was fetched: without it (lost, or cut short by a crash)
    the StationXML's own mtime says it, and start-up does not fail while the service is down."""
    from eqt_monitor.sources.stationservice import cache_paths, fetch_inventory

    server = _serve(inventory)
    uri = f"fdsn://127.0.0.1:{server.server_address[1]}?network=CI&station={','.join(STATIONS)}"
    try:
        xml = fetch_inventory(uri, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert (xml, xml.with_suffix(".json")) == cache_paths(uri, tmp_path) and xml.with_suffix(".json").is_file()
    if sidecar == "missing":
        xml.with_suffix(".json").unlink()
    else:
        xml.with_suffix(".json").write_text('{"uri": ')
    when = obspy.UTCDateTime("2026-01-02T03:04:05").timestamp
    os.utime(xml, (when, when))
    with caplog.at_level(logging.WARNING):
        assert fetch_inventory(uri, tmp_path) == xml
    assert "using the copy fetched 2026-01-02T03:04:05" in caplog.text, caplog.text


def _rotate(salton: Path, inventory: obspy.Inventory, folder: Path, azimuths: bool) -> Path:
    """The stations' data with N/E turned into HH1/HH2 at 30°/120° (miniSEED) and their StationXML
    (with those azimuths, or none); returns the config."""
    a = np.radians(ANGLE)
    stream = obspy.Stream()
    for sta in STATIONS:
        st = obspy.read(str(next((salton / "mseed").glob(f"CI.{sta}.*.mseed"))))
        st.merge(method=1)
        n, e = (st.select(channel=f"HH{c}")[0] for c in "NE")
        assert n.stats.starttime == e.stats.starttime and n.stats.npts == e.stats.npts
        north, east = n.data.astype(np.float64), e.data.astype(np.float64)
        n.data, n.stats.channel = north * np.cos(a) + east * np.sin(a), "HH1"  # the component along 30°
        e.data, e.stats.channel = -north * np.sin(a) + east * np.cos(a), "HH2"  # along 120°
        st.select(channel="HHZ")[0].data = st.select(channel="HHZ")[0].data.astype(np.float64)
        stream += st
    folder.mkdir(parents=True, exist_ok=True)
    stream.write(str(folder / "rotated.mseed"), format="MSEED", encoding="FLOAT64")
    turned = inventory.copy()
    for channel in (c for net in turned for sta in net for c in sta):
        if channel.code in ("HHN", "HHE"):
            channel.code = "HH1" if channel.code == "HHN" else "HH2"
            channel.azimuth = (ANGLE if channel.code == "HH1" else ANGLE + 90.0) if azimuths else None
            channel.dip = 0.0 if azimuths else None
    turned.write(str(folder / "stations.xml"), format="STATIONXML")
    return _write_config(folder, str(folder / "stations.xml"), f"file://{folder}/rotated.mseed")


def test_rotated_horizontals_give_the_unrotated_picks(salton, inventory, model, local, tmp_path, capsys):
    config = _rotate(salton, inventory, tmp_path, azimuths=True)
    assert all(s.orientation and s.orientation["HH1"] == (ANGLE, 0.0) for s in load_config(config).stations)
    rotated = _picks(config, model, tmp_path / "catalog.sqlite")
    assert [(s, p) for s, p, _, _ in rotated] == [(s, p) for s, p, _, _ in local]
    diffs = [abs(r[2] - l[2]) for r, l in zip(rotated, local)]
    prob = max(abs(r[3] - l[3]) for r, l in zip(rotated, local))  # unrotated 1/2 differ by up to ~0.5
    with capsys.disabled():
        print(f"\n{len(local)} picks; after rotation largest time difference {max(diffs):.4f} s, "
              f"probability {prob:.2g}")
    # DESIGN.md (Orientation) says the same: the 40 picks, times identical, probabilities within 5e-6
    # (1.7e-6 measured: the rotation's float64 rounding before the model's float32 input)
    assert len(local) == 40 and max(diffs) == 0.0 and prob <= 5e-6


def test_horizontals_without_azimuths_are_used_as_they_are_with_one_warning_per_station(
        salton, inventory, tmp_path, caplog):
    from eqt_monitor.driver import StationPipeline

    config = load_config(_rotate(salton, inventory, tmp_path, azimuths=False))
    assert all(not s.orientation or "HH1" not in s.orientation for s in config.stations)
    pipeline = StationPipeline(config, predict_fn=lambda batch: None)
    records = obspy.read(str(tmp_path / "rotated.mseed"))
    with caplog.at_level(logging.WARNING):
        for part in (records.slice(obspy.UTCDateTime(t), obspy.UTCDateTime(t + 30)) for t in np.arange(START, END, 30)):
            for trace in part:
                pipeline.add(trace)
            for buffer in pipeline.buffers.values():
                buffer.pop_ready()
    warned = [r.getMessage() for r in caplog.records if "azimuth" in r.getMessage()]
    assert sorted(warned) == sorted(f"station CI.{s}..HH?: no azimuth/dip for HH1 and HH2 in the inventory: using 1 "
                                    "as N and 2 as E, unrotated" for s in STATIONS)


def test_plot_shows_the_rotated_horizontals_as_the_pipeline_turned_them(salton, inventory, model, tmp_path):
    """The rotated replay records each station's orientation; ``plot``'s re-run and drawing take it
    from the run record: the drawn N/E traces are the true north/east data, not HH1/HH2, and the
    re-run's probabilities are the unrotated data's."""
    from matplotlib.colors import to_rgba
    from obspy.signal.cross_correlation import correlate

    from eqt_monitor.driver import config_of_run
    from eqt_monitor.plot import COMPONENT_COLOURS, draw_event, model_probabilities
    from eqt_monitor.records import Arrival, Event, Origin
    from eqt_monitor.replay import replay_into_catalog

    config = load_config(_rotate(salton, inventory, tmp_path, azimuths=True))
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        replay_into_catalog(config, catalog, start=START, end=END, predict_fn=model.predict, model_name="original",
                            weights_sha256=model.weights_sha256, locate=False, progress=False)
        run, picks = catalog.last_run(), catalog.picks()
    keys = [s.key for s in config.stations]
    recorded = config_of_run(run, keys)
    assert [s.orientation for s in recorded.stations] == [s.orientation for s in config.stations]
    assert all(s.orientation["HH2"] == (ANGLE + 90.0, 0.0) for s in recorded.stations)

    rotated = obspy.read(str(tmp_path / "rotated.mseed"))
    truth = obspy.Stream()
    for sta in STATIONS:
        truth += obspy.read(str(next((salton / "mseed").glob(f"CI.{sta}.*.mseed"))))
    truth.merge(method=1)
    turned = model_probabilities(rotated, model.predict, recorded)
    plain = model_probabilities(truth, model.predict, config_of_run(None, keys))
    for key in keys:
        assert np.abs(turned[key].p - plain[key].p).max() < 0.01 and np.abs(turned[key].s - plain[key].s).max() < 0.01

    pick = next(p for p in picks if p.phase == "S")  # one pick's station, drawn around it
    event = Event(Origin(pick.time - 8.0, 33.0, -115.6, 8.0, None, "test"), (Arrival(pick, 0.0, 10.0),))
    fig = draw_event(event, rotated, turned, orientations={s.key: s.orientation for s in recorded.stations})
    wave = fig.axes[0]
    drawn = {c: next(line for line in wave.get_lines() if to_rgba(line.get_color()) == to_rgba(COMPONENT_COLOURS[c]))
             for c in "NE"}
    t0 = obspy.UTCDateTime(event.origin.time)
    for comp, raw in (("N", "HH1"), ("E", "HH2")):
        y = drawn[comp].get_ydata()
        true = truth.select(station=pick.station.station, channel=f"HH{comp}")[0].copy()
        unturned = rotated.select(station=pick.station.station, channel=raw)[0].copy()
        scores = []
        for tr in (true, unturned):
            tr.data = tr.data.astype(np.float64)
            tr.trim(t0 - 15, t0 + 50).detrend("demean").filter("bandpass", freqmin=1.0, freqmax=45.0)
            tr.trim(t0 - 5, t0 + 40)
            n = min(len(y), tr.stats.npts)
            scores.append(float(correlate(y[:n], tr.data[:n], 0)[0]))
        assert scores[0] > 0.999 and scores[1] < 0.99, (comp, scores)


def _reinstalled(shared: Path, tmp_path: Path, azimuth: float) -> Path:
    """CI.BOM's real StationXML with a second epoch of HHE from the end of the first (2021-08-03) at
    ``azimuth``, as after a re-installation."""
    inventory = obspy.read_inventory(str(shared / "data/salton_sea_2020/stations.xml")).select(station="BOM")
    station = inventory[0][0]
    first = next(c for c in station.channels if c.code == "HHE")
    second = first.copy()
    second.start_date, second.end_date, second.azimuth = first.end_date, None, azimuth
    station.channels.append(second)
    path = tmp_path / f"bom-{azimuth:g}.xml"
    inventory.write(str(path), format="STATIONXML")
    return path


def test_disagreeing_epochs_of_a_channel_are_named_once(shared, tmp_path, caplog):
    """A later epoch of HHE 10° off: the latest epoch's azimuth is used, and one warning line names the
    station and both epochs; a later epoch within the tolerance (0.5°) warns nothing."""
    from eqt_monitor.config import stations_from_inventory

    with caplog.at_level(logging.WARNING, logger="eqt_monitor.config.stationxml"):
        (bom,) = stations_from_inventory(_reinstalled(shared, tmp_path, 100.0))
        assert [r.getMessage() for r in caplog.records] == [
            "station CI.BOM..HH?: StationXML epochs disagree in orientation (HHE 2011-04-27..2021-08-03 azimuth 90 dip 0, "
            "2021-08-03.. azimuth 100 dip 0); the latest epoch is used for all data"]
        assert bom.orientation["HHE"] == (100.0, 0.0) and bom.orientation["HHN"] == (0.0, 0.0)
        caplog.clear()
        (bom,) = stations_from_inventory(_reinstalled(shared, tmp_path, 90.5))
        assert not caplog.records and bom.orientation["HHE"] == (90.5, 0.0)
