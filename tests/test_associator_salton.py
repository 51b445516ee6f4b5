"""Real data end to end: replay the Salton Sea swarm, associate, locate, ML, export, plot.

16 SCSN stations, 2020-10-01 00:00-00:03 UTC, during the Westmorland swarm (Brawley seismic zone;
the swarm's M4.9 was reported about 4 km north-east of Westmorland, 33.04 N 115.62 W).
"""
from __future__ import annotations

import struct

import pytest
from obspy import Stream, read, read_events, read_inventory
from obspy.io.quakeml.core import _validate

from eqt_monitor.catalog.export import export_quakeml
from salton import START, salton_replay

from eqt_monitor.cli import main
from eqt_monitor.events.associator import associate
from eqt_monitor.events.magnitude import local_magnitude


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def salton(shared, original_weights, tmp_path_factory):
    folder, catalog, _ = salton_replay(shared, original_weights, tmp_path_factory.mktemp("salton") / "catalog.sqlite")
    events = associate(catalog.picks(), catalog.stations())
    catalog.add_events(events)
    return folder, catalog, events


def test_swarm_events_are_located_in_the_network_with_small_residuals(salton):
    folder, catalog, events = salton
    stations = catalog.stations()
    assert len(stations) == 16
    picks = catalog.picks()
    assert len(picks) > 50
    assert len(events) >= 3  # a swarm at its height: several located events in three minutes
    lats = [v[0] for v in stations.values()]
    lons = [v[1] for v in stations.values()]
    for e in events:
        o = e.origin
        assert min(lats) - 0.1 <= o.latitude <= max(lats) + 0.1 and min(lons) - 0.1 <= o.longitude <= max(lons) + 0.1
        assert o.rms < 0.35 and all(abs(a.residual) <= 0.5 for a in e.arrivals)
    # most events fall in the swarm: within ~10 km of Westmorland
    near = [e for e in events if abs(e.origin.latitude - 33.05) < 0.1 and abs(e.origin.longitude + 115.6) < 0.1]
    assert len(near) >= len(events) - 1
    assert len(catalog.events()) == len(events)
    assert catalog.add_events(associate(picks, stations)) == []  # a re-run adds nothing


def test_swarm_origin_uncertainties_are_plausible(salton):
    """16 stations over ~80 km, residuals ~0.1-0.3 s with a 0D model: sub-km to few-km ellipses."""
    _, catalog, events = salton
    for e in events:
        u = e.origin.uncertainty
        assert 0.05 < u.min_horizontal_km <= u.horizontal_km < 10.0, u
        assert u.depth_km is None or 0.1 < u.depth_km < 30.0, u
        assert 0.01 < u.time_s < 2.0 and 0 < u.azimuthal_gap < 360, u
        assert u.used_phase_count == len(e.arrivals) and u.minimum_distance_km == min(a.distance_km for a in e.arrivals)
    # the swarm events (inside the network, many arrivals) are the best constrained
    inside = [e.origin.uncertainty for e in events if e.origin.uncertainty.azimuthal_gap < 180]
    assert inside and max(u.horizontal_km for u in inside) < 3.0
    assert [e.origin.uncertainty for e in catalog.events()] == [e.origin.uncertainty for e in events]


def test_swarm_magnitudes_and_quakeml(salton, tmp_path):
    folder, catalog, _ = salton
    inventory = read_inventory(str(folder / "stations.xml"))
    stream = Stream()
    for path in sorted((folder / "mseed").glob("*.mseed")):
        stream += read(str(path))
    for event in catalog.events():
        m = local_magnitude(event, stream, inventory)
        catalog.set_magnitude(event.id, m)
        if event.origin.time > START:  # the first may start before the data
            assert m.value is not None and 0.5 < m.value < 5.0 and m.station_count >= 3
    path = tmp_path / "salton.xml"
    n = export_quakeml(catalog, path)
    assert _validate(str(path)) is True
    assert len(read_events(str(path))) == n == len(catalog.events())


def test_plot_command_draws_a_real_event(salton, tmp_path, original_weights, capsys):
    folder, catalog, _ = salton
    event = max(catalog.events(), key=lambda e: len(e.arrivals))
    out = tmp_path / "event.png"
    assert main(["plot", event.short_id, "--db", str(catalog.path), "--out", str(out),
                 "--weights", str(original_weights)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1100 and height > 200 * len({a.pick.station for a in event.arrivals})
