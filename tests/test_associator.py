"""Association and location: synthetic events with known hypocentres, slices, restarts, 1D tables."""
from __future__ import annotations

import math

import numpy as np
import pytest
from obspy import read_events
from obspy.geodetics import gps2dist_azimuth
from obspy.io.quakeml.core import _validate

from eqt_monitor.catalog.export import export_quakeml
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.errors import ConfigError
from eqt_monitor.events.associator import AssociatorConfig, associate
from eqt_monitor.events.live import LiveAssociator
from eqt_monitor.events.velocity import Layer, layered_travel_times
from eqt_monitor.records import Pick, StationKey

LAT0, LON0, T_START = 33.0, -115.6, 1601510400.0
SHA = "ab" * 32


def _network(rng: np.random.Generator, n: int = 16) -> dict[str, tuple[float, float, float]]:
    return {f"XX.S{i:02d}.": (LAT0 + rng.uniform(-0.3, 0.3), LON0 + rng.uniform(-0.35, 0.35), rng.uniform(-50, 400))
            for i in range(n)}


def _hypocentres(rng: np.random.Generator, n: int) -> list[tuple[float, float, float, float]]:
    out, t = [], T_START
    for _ in range(n):
        t += rng.uniform(6.0, 40.0)
        out.append((t, LAT0 + rng.uniform(-0.2, 0.2), LON0 + rng.uniform(-0.25, 0.25), rng.uniform(2.0, 15.0)))
    return out


def _key(sid: str) -> StationKey:
    net, sta, loc = sid.split(".")
    return StationKey(net, sta, loc, "HH")


def _synthetic_picks(rng, stations, hypocentres, travel_time, noise=(0.05, 0.05)) -> list[Pick]:
    """Picks at the model's travel times (+ Gaussian noise, ``noise`` = P and S std in s, 10 % missing)
    and random false picks."""
    picks = []
    for t0, lat, lon, depth in hypocentres:
        for sid, (slat, slon, elev) in stations.items():
            epi = gps2dist_azimuth(lat, lon, slat, slon)[0] / 1000.0
            for phase in "PS":
                if rng.uniform() < 0.1:
                    continue
                tt = travel_time(phase, epi, depth + elev / 1000.0)
                picks.append(Pick(_key(sid), phase, t0 + tt + rng.normal(0, noise[phase == "S"]), 0.8))
    end = hypocentres[-1][0] + 60.0
    for sid in stations:
        for _ in range(int((end - T_START) / 30)):  # one false pick per station every 30 s
            picks.append(Pick(_key(sid), str(rng.choice(["P", "S"])), rng.uniform(T_START, end), 0.35))
    return sorted(picks, key=lambda p: p.time)


def _homogeneous(vp=6.0, vs=3.5):
    return lambda phase, epi, dz: math.hypot(epi, dz) / (vp if phase == "P" else vs)


def _matches(found, hypocentres, max_km=2.0, max_s=0.5) -> int:
    """How many true hypocentres have a found event within ``max_km`` (3-D) and ``max_s``."""
    hits = 0
    for t0, lat, lon, depth in hypocentres:
        for e in found:
            o = e.origin
            epi = gps2dist_azimuth(lat, lon, o.latitude, o.longitude)[0] / 1000.0
            if abs(o.time - t0) <= max_s and math.hypot(epi, o.depth_km - depth) <= max_km:
                hits += 1
                break
    return hits


def _no_duplicates(found) -> None:
    times = sorted(e.origin.time for e in found)
    assert all(b - a > 2.0 for a, b in zip(times, times[1:])), "two events within 2 s: a duplicate"
    used = [a.pick for e in found for a in e.arrivals]
    assert len(used) == len(set(used)), "a pick belongs to two events"


@pytest.fixture(scope="module")
def scenario():
    rng = np.random.default_rng(7)
    stations = _network(rng)
    hypocentres = _hypocentres(rng, 40)
    return stations, hypocentres, _synthetic_picks(rng, stations, hypocentres, _homogeneous())


def test_whole_span_recovers_known_hypocentres(scenario):
    stations, hypocentres, picks = scenario
    found = associate(picks, stations, AssociatorConfig())
    assert _matches(found, hypocentres) >= 0.95 * len(hypocentres)
    assert len(found) <= len(hypocentres) + 1  # false picks make at most one false event
    _no_duplicates(found)
    event = found[0]
    assert event.origin.method.startswith("PyOcto 0.2.2")
    assert all(abs(a.residual) <= 0.5 for a in event.arrivals)
    assert all(a.distance_km < 100 and 0 <= a.azimuth <= 360 for a in event.arrivals)


def test_residual_is_observed_minus_predicted(scenario):
    stations, hypocentres, picks = scenario
    t0 = next(h[0] for a, h, b in zip(hypocentres, hypocentres[1:], hypocentres[2:])
              if h[0] - a[0] > 25 and b[0] - h[0] > 25)  # an event well apart from the others
    first = [p for p in picks if t0 <= p.time < t0 + 20 and p.probability > 0.5]
    late = first[-1]
    shifted = first[:-1] + [Pick(late.station, late.phase, late.time + 0.3, late.probability)]
    (event,) = associate(shifted, stations)
    moved = [a for a in event.arrivals if a.pick.station == late.station and a.pick.phase == late.phase]
    assert moved and moved[0].residual == pytest.approx(0.3, abs=0.15)


def _slide(assoc: LiveAssociator, picks: list[Pick], start: float, stop: float, step: float):
    committed = []
    t = start
    while t < stop:
        t = min(t + step, stop)
        assoc.feed(p for p in picks if t - step <= p.time < t)
        committed += assoc.advance(t)
    return committed


@pytest.mark.slow
def test_sliding_slices_match_the_whole_span(scenario, tmp_path):
    stations, hypocentres, picks = scenario
    cat = Catalog(tmp_path / "live.sqlite")
    cat.add_picks(picks, model="original", weights_sha256=SHA)
    picks = cat.picks()  # as the daemon feeds them: stored, carrying their ids
    assoc = LiveAssociator(stations, AssociatorConfig(), store=cat)
    assert assoc.max_travel_time > 20  # 60 x 70 km plus margins at 3.5 km/s
    end = picks[-1].time + 1
    committed = _slide(assoc, picks, T_START, end, 15.0) + assoc.flush()
    stored = cat.events()
    assert len(committed) == len(stored)
    _no_duplicates(stored)
    assert _matches(stored, hypocentres) >= 0.95 * len(hypocentres)


@pytest.mark.slow
def test_restart_resumes_without_duplicates_or_losses(scenario, tmp_path):
    stations, hypocentres, picks = scenario
    cat = Catalog(tmp_path / "restart.sqlite")
    cat.add_picks(picks, model="original", weights_sha256=SHA)
    picks = cat.picks()  # as the daemon feeds them: stored, carrying their ids
    middle = hypocentres[len(hypocentres) // 2][0] + 3.0  # stop mid-event
    first = LiveAssociator(stations, AssociatorConfig(), store=cat)
    _slide(first, picks, T_START, middle, 15.0)
    del first
    second = LiveAssociator(stations, AssociatorConfig(), store=Catalog(tmp_path / "restart.sqlite"))
    assert second.horizon == pytest.approx(middle - second.max_travel_time)
    # the daemon re-feeds a little of what it had already fed before the restart
    _slide(second, picks, middle - 30.0, picks[-1].time + 1, 15.0)
    second.flush()
    stored = cat.events()
    _no_duplicates(stored)
    assert _matches(stored, hypocentres) >= 0.95 * len(hypocentres)
    assert len(stored) <= len(hypocentres) + 1
    # the re-fed picks were late, and re-associating them changed no event
    assert {(e.version, e.status) for e in stored} == {(1, "preliminary")}
    # and a full replay over the same catalog adds nothing
    assert cat.add_events(associate(picks, stations)) == []


def test_layered_times_homogeneous_is_straight_line():
    layers = [Layer(0.0, 6.0, 3.5), Layer(10.0, 6.0, 3.5)]
    x = np.array([0.0, 3.0, 40.0, 150.0])
    z = np.array([0.0, 2.0, 12.0, 30.0])
    t = layered_travel_times(layers, "S", x, z)
    assert np.allclose(t, np.hypot(x[:, None], z[None, :]) / 3.5, rtol=1e-6, atol=1e-6)


def test_layered_times_head_wave_matches_textbook():
    h, v1, v2 = 10.0, 5.0, 8.0
    layers = [Layer(0.0, v1, 2.9), Layer(h, v2, 4.6)]
    theta_c = math.asin(v1 / v2)
    crossover = 2 * h * math.sqrt((v2 + v1) / (v2 - v1))
    x = np.array([10.0, crossover - 5, crossover + 5, 120.0])
    t = layered_travel_times(layers, "P", x, np.array([0.0]))[:, 0]
    head = x / v2 + 2 * h * math.cos(theta_c) / v1
    assert np.allclose(t, np.minimum(x / v1, head))
    assert t[1] == pytest.approx(x[1] / v1) and t[2] == pytest.approx(head[2])
    # across the interface the first arrival is continuous in depth
    deep = layered_travel_times(layers, "P", np.array([30.0]), np.array([9.99, 10.0, 10.01]))[0]
    assert np.all(np.abs(np.diff(deep)) < 0.01)
    # straight down, the time is the sum of the layer times
    assert layered_travel_times(layers, "P", np.array([0.0]), np.array([15.0]))[0, 0] == pytest.approx(h / v1 + 5 / v2)


def test_layered_model_recovers_events_from_its_own_travel_times():
    rng = np.random.default_rng(11)
    stations = _network(rng)
    hypocentres = _hypocentres(rng, 20)
    layers = (Layer(-1.0, 5.0, 2.9), Layer(4.0, 6.0, 3.5), Layer(16.0, 6.8, 3.9))

    def travel_time(phase, epi, dz):
        # source depth below the station; the model's first layer starts at the station here
        return float(layered_travel_times(layers, phase, np.array([epi]), np.array([dz]))[0, 0])

    picks = _synthetic_picks(rng, {k: (v[0], v[1], 1000.0) for k, v in stations.items()}, hypocentres, travel_time)
    flat = {k: (v[0], v[1], 1000.0) for k, v in stations.items()}  # stations at the top of the model
    found = associate(picks, flat, AssociatorConfig(layers=layers))
    assert found and found[0].origin.method.startswith("PyOcto 0.2.2 + least squares, 1D")
    assert _matches(found, hypocentres) >= 0.95 * len(hypocentres)
    # the table's derivatives give uncertainties like the 0D model's (50 ms noise: sub-km ellipses)
    assert 0.2 < np.median([e.origin.uncertainty.horizontal_km for e in found]) < 1.5
    _no_duplicates(found)


def test_bad_configuration_is_reported():
    with pytest.raises(ConfigError, match="vs < vp"):
        AssociatorConfig(vp=3.0, vs=3.5)
    with pytest.raises(ConfigError, match="tops must increase"):
        AssociatorConfig(layers=(Layer(5.0, 6.0, 3.5), Layer(0.0, 5.0, 3.0)))
    with pytest.raises(ConfigError, match="no station coordinates"):
        associate([], {})


def test_picks_from_unknown_stations_are_skipped_with_a_warning(scenario, caplog):
    stations, hypocentres, picks = scenario
    stranger = Pick(StationKey("ZZ", "NOPE", "", "HH"), "P", hypocentres[0][0] + 2, 0.9)
    window = [p for p in picks if p.time < hypocentres[1][0]] + [stranger]
    found = associate(window, stations)
    assert "ZZ.NOPE." in caplog.text
    assert all(a.pick.station.station != "NOPE" for e in found for a in e.arrivals)


@pytest.fixture(scope="module")
def noisy_events(tmp_path_factory):
    """40 events picked with EqT-like noise (P 0.05 s, S 0.1 s std), located and stored:
    (hypocentres, events as located, their catalog)."""
    rng = np.random.default_rng(21)
    stations = _network(rng)
    hypocentres = _hypocentres(rng, 40)
    cat = Catalog(tmp_path_factory.mktemp("noisy") / "catalog.sqlite")
    cat.add_picks(_synthetic_picks(rng, stations, hypocentres, _homogeneous(), noise=(0.05, 0.1)),
                  model="original", weights_sha256=SHA)
    found = associate(cat.picks(), stations)
    cat.add_events(found)
    return hypocentres, found, cat


def test_true_hypocentres_lie_within_the_reported_uncertainty(noisy_events):
    hypocentres, found, _ = noisy_events
    assert _matches(found, hypocentres) == len(hypocentres)
    ellipse, depth, time, sizes = [], [], [], []
    for t0, lat, lon, z in hypocentres:
        o = min(found, key=lambda e: abs(e.origin.time - t0)).origin
        u = o.uncertainty
        assert u.confidence_level == 90.0 and u.used_phase_count >= 6 and 0 < u.azimuthal_gap < 360
        # the true epicentre in the ellipse's axes (km along the major and minor axis)
        metres, azimuth, _ = gps2dist_azimuth(o.latitude, o.longitude, lat, lon)
        turn = math.radians(azimuth - u.azimuth_max_horizontal)
        along, across = metres / 1000 * math.cos(turn), metres / 1000 * math.sin(turn)
        ellipse.append(math.hypot(along / u.horizontal_km, across / u.min_horizontal_km))
        if u.depth_km is not None:
            depth.append(abs(o.depth_km - z) / u.depth_km)
        time.append(abs(o.time - t0) / u.time_s)
        sizes.append(u.horizontal_km)
    assert np.mean(np.array(ellipse) <= 1) >= 0.9
    assert len(depth) >= 0.9 * len(hypocentres) and np.mean(np.array(depth) <= 1) >= 0.9
    assert np.mean(np.array(time) <= 1) >= 0.9
    # and the regions are not so large that anything falls inside: 16 stations over 60 x 70 km
    assert np.median(sizes) < 1.5
    assert np.median(ellipse) > 0.1


def test_uncertainties_reach_the_catalog_and_the_quakeml(noisy_events, tmp_path):
    _, found, cat = noisy_events
    stored = cat.events()
    assert [e.origin.uncertainty for e in stored] == [e.origin.uncertainty for e in found]
    path = tmp_path / "noisy.xml"
    assert export_quakeml(cat, path) == len(found)
    assert _validate(str(path)) is True
    origins = [e.preferred_origin() for e in read_events(str(path))]
    assert [o.origin_uncertainty.max_horizontal_uncertainty for o in origins] == [
        round(e.origin.uncertainty.horizontal_km * 1000, 1) for e in found]
    assert all(o.quality.azimuthal_gap > 0 and o.depth_errors.confidence_level == 90.0 for o in origins)
