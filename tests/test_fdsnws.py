"""``eqt-monitor serve``: ObsPy's FDSN client against the real command on 127.0.0.1, over the catalog
of a salton_sea_2020 replay (16 stations, 3 minutes of the Westmorland swarm, associated, with ML).

The expected answers come from the events themselves (their origins, magnitudes and update times
as the catalog reads them), selected here in Python; radii with ObsPy's great-circle distance.
Bounds are put halfway between two events' values so that no event sits on one.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import warnings
from dataclasses import replace

import pytest
from obspy import UTCDateTime, read_events
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import FDSNBadRequestException, FDSNNoDataException
from obspy.geodetics import locations2degrees
from obspy.io.quakeml.core import _validate

from eqt_monitor.catalog.ids import origin_id
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.service.fdsnws import PREFIX
from eqt_monitor.service.params import PARAMETERS
from eqt_monitor.service.text import QUALITY_COLUMNS, STANDARD_COLUMNS, event_line

START = UTCDateTime("2020-10-01T00:00:00").timestamp
WESTMORLAND = (33.04, -115.62)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def catalog(shared, original_weights, tmp_path_factory):
    """The replayed, associated salton_sea_2020 catalog with local magnitudes."""
    from obspy import Stream, read, read_inventory

    from salton import salton_replay

    from eqt_monitor.events.associator import associate
    from eqt_monitor.events.magnitude import local_magnitude

    folder, cat, _ = salton_replay(shared, original_weights, tmp_path_factory.mktemp("fdsnws") / "catalog.sqlite")
    cat.add_events(associate(cat.picks(), cat.stations()))
    inventory = read_inventory(str(folder / "stations.xml"))
    stream = Stream()
    for path in sorted((folder / "mseed").glob("*.mseed")):
        stream += read(str(path))
    for event in cat.events():
        cat.set_magnitude(event.id, local_magnitude(event, stream, inventory))
    events = cat.events()
    assert len(events) >= 4 and sum(1 for e in events if e.magnitude and e.magnitude.value is not None) >= 3
    yield cat
    cat.close()


@pytest.fixture(scope="module")
def url(catalog):
    """The base URL of ``eqt-monitor serve`` running on the catalog (a subprocess, any free port)."""
    proc = subprocess.Popen([sys.executable, "-m", "eqt_monitor.cli", "serve", "--db", str(catalog.path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving "), line + proc.stderr.read()
        service = line.split(" on ", 1)[1].strip()
        assert service.startswith("http://127.0.0.1:") and service.endswith(f"{PREFIX}/")
        yield service[:-len(f"{PREFIX}/")]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def client(url):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a WADL ObsPy finds wanting is a warning: fail on it
        return Client(url)


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET (error statuses too)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def ids(cat) -> list[str]:
    return [e.resource_id.id for e in cat]


def found(client, **kwargs) -> list[str]:
    """The ids ``get_events`` returns; none for a 204."""
    try:
        return ids(client.get_events(**kwargs))
    except FDSNNoDataException:
        return []


def midpoint(values: list[float], k: int) -> float:
    """Halfway between the k-th and (k+1)-th smallest of ``values``."""
    s = sorted(values)
    return (s[k - 1] + s[k]) / 2


def test_client_discovers_the_service_from_its_wadl(client, url):
    params = client.services["event"]
    assert {p.name for p in PARAMETERS} - {"nodata"} <= set(params)
    assert params["starttime"]["type"] is UTCDateTime and params["limit"]["type"] is int
    assert params["orderby"]["options"] == ["time", "time-asc", "magnitude", "magnitude-asc"]
    assert client.services["available_event_catalogs"] == {"eqt-monitor"}
    assert client.services["available_event_contributors"] == {"eqt-monitor"}
    assert list(client.get_webservice_version("event")) == [1, 2, 0]
    status, page = get(f"{url}{PREFIX}/")
    assert status == 200 and "<code>includearrivals</code>" in page and "minlat" in page


def test_time_box_radius_and_magnitude_select_exactly_the_matching_events(client, catalog):
    events = catalog.events()
    times = [e.origin.time for e in events]
    t0, t1 = midpoint(times, 1), midpoint(times, len(times) - 1)
    lats = [e.origin.latitude for e in events]
    lons = [e.origin.longitude for e in events]
    box = (min(lats) - 0.01, midpoint(lats, len(lats) - 1), midpoint(lons, 1), max(lons) + 0.01)
    dist = {e.id: locations2degrees(*WESTMORLAND, e.origin.latitude, e.origin.longitude) for e in events}
    radius = midpoint(list(dist.values()), len(events) // 2)
    mags = [e.magnitude.value for e in events if e.magnitude and e.magnitude.value is not None]
    min_mag = midpoint(mags, 1)

    cases = [
        (dict(starttime=UTCDateTime(t0), endtime=UTCDateTime(t1)), lambda e: t0 <= e.origin.time <= t1),
        (dict(minlatitude=box[0], maxlatitude=box[1], minlongitude=box[2], maxlongitude=box[3]),
         lambda e: box[0] <= e.origin.latitude <= box[1] and box[2] <= e.origin.longitude <= box[3]),
        (dict(latitude=WESTMORLAND[0], longitude=WESTMORLAND[1], maxradius=radius), lambda e: dist[e.id] <= radius),
        (dict(latitude=WESTMORLAND[0], longitude=WESTMORLAND[1], minradius=radius), lambda e: dist[e.id] >= radius),
        (dict(minmagnitude=min_mag, magnitudetype="ml"),
         lambda e: e.magnitude is not None and e.magnitude.value is not None and e.magnitude.value >= min_mag),
        (dict(maxmagnitude=min_mag), lambda e: e.magnitude is not None and e.magnitude.value is not None
         and e.magnitude.value <= min_mag),
    ]
    for kwargs, keep in cases:
        expected = [e for e in events if keep(e)]
        assert 0 < len(expected) < len(events), kwargs  # the selection splits the catalog
        got = client.get_events(includearrivals=True, orderby="time-asc", **kwargs)
        assert ids(got) == [e.id for e in expected], kwargs
        for qe, e in zip(got, expected):
            origin = qe.preferred_origin()
            assert len(origin.arrivals) == len(e.arrivals) and len(qe.picks) == len(e.arrivals)
            assert {p.resource_id.id for p in qe.picks} == {a.pick_id for a in e.arrivals}
            assert abs(origin.latitude - e.origin.latitude) < 1e-5 and abs(origin.time - e.origin.time) < 1e-3
    both = client.get_events(starttime=UTCDateTime(t0), minmagnitude=min_mag)
    assert set(ids(both)) == {e.id for e in events if e.origin.time >= t0 and e.magnitude
                              and e.magnitude.value is not None and e.magnitude.value >= min_mag}


def test_quakeml_is_schema_valid_with_and_without_arrivals(client, catalog, tmp_path):
    for include in (True, False):
        path = tmp_path / f"events-{include}.xml"
        client.get_events(includearrivals=include, filename=str(path))
        assert _validate(str(path)) is True
        cat = read_events(str(path))
        assert ids(cat) == [e.id for e in sorted(catalog.events(), key=lambda e: -e.origin.time)]  # orderby=time
        assert all(bool(ev.picks) == include and bool(ev.origins[0].arrivals) == include for ev in cat)
        assert all(ev.origins[0].quality.used_phase_count > 0 for ev in cat)
        stored = {e.id: e.origin.uncertainty for e in catalog.events()}
        for ev in cat:  # the locator's uncertainty rides along (unc16's originUncertainty)
            u, ou = stored[ev.resource_id.id], ev.origins[0].origin_uncertainty
            assert (u is None and ou is None) or abs(ou.max_horizontal_uncertainty - u.horizontal_km * 1000) <= 0.05


def test_text_format_parses_and_matches_the_catalog(url, catalog, tmp_path):
    status, body = get(f"{url}{PREFIX}/query?format=text&orderby=time-asc")
    assert status == 200
    lines = body.splitlines()
    header = lines[0].lstrip("#").split("|")
    assert header[:13] == ["EventID", "Time", "Latitude", "Longitude", "Depth/km", "Author", "Catalog", "Contributor",
                           "ContributorID", "MagType", "Magnitude", "MagAuthor", "EventLocationName"]
    events = catalog.events()
    assert len(lines) == 1 + len(events)
    for line, e in zip(lines[1:], events):
        row = dict(zip(header, line.split("|")))
        assert len(line.split("|")) == len(header) >= 13
        assert row["EventID"] == e.id and abs(UTCDateTime(row["Time"]).timestamp - e.origin.time) < 1e-5
        assert abs(float(row["Latitude"]) - e.origin.latitude) < 1e-5
        assert abs(float(row["Longitude"]) - e.origin.longitude) < 1e-5
        assert abs(float(row["Depth/km"]) - e.origin.depth_km) < 1e-3
        if e.magnitude and e.magnitude.value is not None:
            assert row["MagType"] == "ML" and abs(float(row["Magnitude"]) - e.magnitude.value) < 0.005
        assert row["EventLocationName"] in ("SOUTHERN CALIFORNIA", "CALIF.-BAJA CALIF. BORDER REGION")
        assert int(row["UsedPhaseCount"]) == len(e.arrivals)
    path = tmp_path / "events.txt"
    path.write_text(body)
    parsed = read_events(str(path), format="EVENTTXT")  # ObsPy's reader of the spec's 13 columns
    assert [round(ev.origins[0].latitude, 5) for ev in parsed] == [round(e.origin.latitude, 5) for e in events]


def test_text_quality_columns_carry_the_origin_uncertainty(url, catalog):
    status, body = get(f"{url}{PREFIX}/query?format=text&orderby=time-asc")
    header = body.splitlines()[0].lstrip("#").split("|")
    assert tuple(header) == STANDARD_COLUMNS + QUALITY_COLUMNS
    located = 0
    for line, e in zip(body.splitlines()[1:], catalog.events()):
        row = dict(zip(header, line.split("|")))
        u = e.origin.uncertainty
        if u is None:
            assert row["HorizontalUncertainty/km"] == row["ConfidenceLevel/%"] == ""  # none given: none invented
            continue
        located += 1
        assert abs(float(row["HorizontalUncertainty/km"]) - u.horizontal_km) < 5e-4
        assert abs(float(row["MinHorizontalUncertainty/km"]) - u.min_horizontal_km) < 5e-4
        assert abs(float(row["TimeUncertainty/s"]) - u.time_s) < 5e-4
        assert abs(float(row["AzimuthalGap/deg"]) - u.azimuthal_gap) < 0.05
        assert abs(float(row["MinimumDistance/km"]) - u.minimum_distance_km) < 5e-4
        assert float(row["ConfidenceLevel/%"]) == u.confidence_level
        assert (int(row["UsedPhaseCount"]), int(row["UsedStationCount"])) == (u.used_phase_count, u.used_station_count)
        assert row["DepthUncertainty/km"] == ("" if u.depth_km is None else f"{u.depth_km:.3f}")
    assert located >= 1
    event = catalog.events()[0]
    bare = event_line(replace(event, origin=replace(event.origin, uncertainty=None)), catalog="c", agency="a")
    assert bare.split("|")[len(STANDARD_COLUMNS) + 1:len(STANDARD_COLUMNS) + 8] == [""] * 7


def test_no_data_is_204_or_404(client, url):
    with pytest.raises(FDSNNoDataException):
        client.get_events(minmagnitude=9.0)
    status, body = get(f"{url}{PREFIX}/query?minmag=9")
    assert (status, body) == (204, "")
    status, body = get(f"{url}{PREFIX}/query?minmag=9&nodata=404")
    assert status == 404 and body.startswith("Error 404: Not Found\n")
    assert get(f"{url}{PREFIX}/query?catalog=other")[0] == 204
    assert get(f"{url}{PREFIX}/query?eventtype=quarry*")[0] == 204
    assert get(f"{url}{PREFIX}/query?eventtype=quarry%20blast,earth*")[0] == 200


@pytest.mark.parametrize("query, reason", [
    ("color=red", "unknown parameter 'color'"),
    ("starttime=yesterday", "starttime='yesterday': not a time"),
    ("minlat=95", "minlatitude='95': out of range"),
    ("orderby=depth", "orderby='depth': expected one of time, time-asc, magnitude, magnitude-asc"),
    ("includearrivals=yes", "includearrivals='yes': expected true or false"),
    ("limit=0", "limit='0': out of range"),
    ("start=2020-10-01T00:02:00&end=2020-10-01T00:01:00", "starttime is greater than endtime"),
    ("minmag=2&minmagnitude=3", "parameter 'minmagnitude' given more than once"),
    ("format=json", "format='json': expected one of xml, text"),
    ("nodata=500", "nodata='500': expected one of 204, 404"),
])
def test_bad_requests_are_400_with_the_spec_error_document(url, query, reason):
    status, body = get(f"{url}{PREFIX}/query?{query}")
    assert status == 400
    lines = body.splitlines()
    assert lines[0] == "Error 400: Bad Request"
    assert reason in body
    for heading, value in (("Request:", f"{url}{PREFIX}/query?{query}"), ("Service version:", "1.2.0")):
        assert lines[lines.index(heading) + 1] == value
    submitted = UTCDateTime(lines[lines.index("Request Submitted:") + 1])
    assert abs(submitted - UTCDateTime()) < 60
    assert f"Usage details are available from {url}{PREFIX}/" in body


def test_the_client_sees_a_bad_request(client):
    with pytest.raises(FDSNBadRequestException):
        client.get_events(starttime=UTCDateTime(START + 60), endtime=UTCDateTime(START))


def test_eventid_returns_exactly_that_event(client, catalog):
    for event in catalog.events():
        assert ids(client.get_events(eventid=event.short_id)) == [event.id]
        assert ids(client.get_events(eventid=event.id, includearrivals=True)) == [event.id]
    with pytest.raises(FDSNNoDataException):
        client.get_events(eventid="0000000000")


def test_limit_offset_and_orderby_page_through_the_catalog(client, catalog):
    events = catalog.events()
    by_time = [e.id for e in events]
    pages = [ids(client.get_events(orderby="time-asc", limit=2, offset=k)) for k in range(1, len(events) + 1, 2)]
    assert [i for page in pages for i in page] == by_time and all(len(p) <= 2 for p in pages)
    assert ids(client.get_events()) == by_time[::-1]  # orderby=time: newest first
    with_mag = [e for e in events if e.magnitude and e.magnitude.value is not None]
    without = [e.id for e in events if e not in with_mag]
    by_mag = [e.id for e in sorted(with_mag, key=lambda e: -e.magnitude.value)]
    assert ids(client.get_events(orderby="magnitude")) == by_mag + without
    assert ids(client.get_events(orderby="magnitude-asc"))[:len(with_mag)] == by_mag[::-1]
    center = dict(latitude=WESTMORLAND[0], longitude=WESTMORLAND[1], maxradius=10.0)  # paging after the radius test
    assert ids(client.get_events(orderby="time-asc", limit=2, offset=2, **center)) == by_time[1:3]


def test_updatedafter_selects_by_the_catalogs_update_time(client, catalog):
    events = catalog.events()
    updated = [e.updated for e in events]
    assert all(u is not None for u in updated)
    cut = midpoint(updated, len(updated) // 2)
    got = client.get_events(updatedafter=UTCDateTime(cut), orderby="time-asc")
    expected = [e.id for e in events if e.updated >= cut]
    assert 0 < len(expected) < len(events) and ids(got) == expected


def test_too_large_is_413(catalog):
    from eqt_monitor.service.fdsnws import create_app

    app = create_app(catalog, max_events=2)
    web = app.test_client()
    response = web.get(f"{PREFIX}/query")
    assert response.status_code == 413 and response.text.startswith("Error 413: Request Entity Too Large\n")
    assert web.get(f"{PREFIX}/query?limit=2").status_code == 200


def test_concurrent_queries_share_the_catalog(url, catalog):
    """waitress runs requests on several threads over one Catalog: all answers are whole and equal."""
    answers: list[tuple[int, str]] = []
    query = f"{url}{PREFIX}/query?format=text&orderby=time-asc"

    def ask() -> None:
        for _ in range(5):
            answers.append(get(query))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 40 and len(set(answers)) == 1 and answers[0][0] == 200
    assert answers[0][1].count("\n") == 1 + len(catalog.events())


def test_the_daemon_web_server_mounts_the_service(catalog):
    """``metrics.serve_events``: the daemon's endpoint (live/web.py) serves the same answers."""
    from prometheus_client import CollectorRegistry

    from eqt_monitor.live import web
    from eqt_monitor.service import fdsnws

    blueprint = fdsnws.create_blueprint(catalog)
    with web.serve("127.0.0.1", 0, CollectorRegistry(), blueprints=[(blueprint, PREFIX)]) as server:
        status, text = get(f"{server.url}{PREFIX}/query?format=text&orderby=time-asc")
        assert status == 200 and text.count("\n") == 1 + len(catalog.events())
        assert get(f"{server.url}/healthz") == (200, "ok\n")
        cat = Client(server.url).get_events(eventid=catalog.events()[0].short_id)
        assert ids(cat) == [catalog.events()[0].id]


def test_serve_refuses_a_missing_catalog_and_a_taken_port(catalog, tmp_path, capsys):
    from eqt_monitor.cli import main

    assert main(["serve", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert capsys.readouterr().err.strip() == f"eqt-monitor: error: --db {tmp_path / 'none.sqlite'}: no such catalog file"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--db", str(catalog.path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"eqt-monitor: error: --host 127.0.0.1 --port {port}: cannot listen") and "\n" not in err


@pytest.fixture(scope="module")
def late(catalog, tmp_path_factory):
    """A live association of the same picks with two stations held back and released late (the harness
    of tests/test_event_updates.py): some events get a second origin, one is rejected. Served by the
    real waitress server in a thread; yields (catalog, client, base URL)."""
    from test_event_updates import HELD, RELEASE, live

    from eqt_monitor.live.web import WebServer
    from eqt_monitor.service.fdsnws import create_app

    picks = catalog.picks()
    (_, sha), = set(catalog.pick_sources(p.id for p in picks).values())
    updated, _ = live(tmp_path_factory.mktemp("late") / "late.sqlite", (picks, catalog.stations(), sha), HELD, RELEASE)
    with WebServer(create_app(updated), "127.0.0.1", 0) as server:
        yield updated, Client(server.url), server.url, RELEASE
    updated.close()


def test_updated_events_their_origins_and_rejections(late):
    catalog, client, url, release = late
    events = catalog.events()
    versions = {e.id: catalog.event_versions(e.id) for e in events}
    assert sum(e.version == 2 for e in events) >= 2 and sum(e.status == "rejected" for e in events) == 1
    assert any(e.updated == release for e in events)  # the release changed some
    for cut in sorted({e.updated for e in events})[1:]:  # the catalog's clock ticks in whole 10 s steps
        changed = [e.id for e in events if e.updated >= cut]
        assert ids(client.get_events(updatedafter=UTCDateTime(cut), orderby="time-asc")) == changed
        assert found(client, updatedafter=UTCDateTime(cut + 0.5), orderby="time-asc") == \
            [e.id for e in events if e.updated > cut]
    every = client.get_events(includeallorigins=True, includearrivals=True, orderby="time-asc")
    preferred = client.get_events(includearrivals=True, orderby="time-asc")
    assert ids(every) == ids(preferred) == [e.id for e in events]
    for all_of, one, e in zip(every, preferred, events):
        history = versions[e.id]
        assert [o.resource_id.id for o in all_of.origins] == [origin_id(v.id, v.version) for v in history]
        assert [len(o.arrivals) for o in all_of.origins] == [len(v.arrivals) for v in history]
        assert [o.resource_id.id for o in one.origins] == [origin_id(e.id, e.version)]
        assert one.preferred_origin_id == all_of.preferred_origin_id == one.origins[0].resource_id
    rejected = [e.id for e in events if e.status == "rejected"]
    assert ids(client.get_events(eventtype="not existing")) == rejected
    assert set(ids(client.get_events(eventtype="earthquake"))) == {e.id for e in events} - set(rejected)
    status, body = get(f"{url}{PREFIX}/query?format=text&eventtype=not*")
    assert status == 200 and [line.split("|")[13] for line in body.splitlines()[1:]] == ["not existing"]


def test_a_failing_catalog_is_a_500_document(catalog, caplog):
    from eqt_monitor.service.fdsnws import create_app

    broken = Catalog(catalog.path)
    broken.close()  # every read now raises inside the store
    response = create_app(broken).test_client().get(f"{PREFIX}/query?format=text")
    assert response.status_code == 500
    assert response.text.startswith("Error 500: Internal Server Error\n") and "Service version:\n1.2.0" in response.text
    assert "fdsnws-event query" in caplog.text  # the traceback is in the log, not the answer
