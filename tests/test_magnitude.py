"""ML: Wood-Anderson simulation through a real response removal, Hutton & Boore, missing responses."""
from __future__ import annotations

import math

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime, read, read_inventory
from obspy.core.inventory import Channel, Inventory, Network, Response, Station

from eqt_monitor.events.magnitude import amplitude_window, hutton_boore_log_a0, local_magnitude, waveform_span
from eqt_monitor.records import Arrival, Event, Origin, Pick, StationKey

T0 = 1601510400.0
GAIN = 6.0e8  # counts per m/s, flat


def _inventory(codes: list[str]) -> Inventory:
    stations = []
    for code in codes:
        channels = [
            Channel(f"HH{c}", "", 33.0, -115.6, 0.0, 0.0, azimuth=az, dip=dip, sample_rate=100.0,
                    response=Response.from_paz([], [], GAIN, input_units="M/S", output_units="COUNTS"))
            for c, az, dip in (("E", 90, 0), ("N", 0, 0), ("Z", 0, -90))
        ]
        stations.append(Station(code, 33.0, -115.6, 0.0, channels=channels))
    return Inventory(networks=[Network("XX", stations=stations)], source="test")


def _sine_stream(code: str, amp_m: float, freq: float, start: float, seconds: float) -> Stream:
    """Ground displacement amp*sin(2 pi f t) recorded by the flat velocity sensor, in counts."""
    t = np.arange(int(seconds * 100)) / 100.0
    velocity = amp_m * 2 * math.pi * freq * np.cos(2 * math.pi * freq * t)
    taper = np.clip(np.minimum(t, t[-1] - t) / 5.0, 0, 1)  # smooth on/off
    traces = []
    for c in "ENZ":
        header = {"network": "XX", "station": code, "location": "", "channel": f"HH{c}",
                  "sampling_rate": 100.0, "starttime": UTCDateTime(start)}
        traces.append(Trace((velocity * taper * GAIN).astype(np.float64), header=header))
    return Stream(traces)


def _event(stations: dict[str, float], depth: float = 8.0) -> Event:
    arrivals = []
    for code, epi in stations.items():
        r = math.hypot(epi, depth)
        key = StationKey("XX", code, "", "HH")
        arrivals += [Arrival(Pick(key, "P", T0 + r / 6.0, 0.9), 0.0, epi),
                     Arrival(Pick(key, "S", T0 + r / 3.5, 0.9), 0.0, epi)]
    return Event(Origin(T0, 33.0, -115.6, depth, 0.1, "test"), tuple(arrivals))


def test_hutton_boore_published_values():
    assert hutton_boore_log_a0(100.0) == pytest.approx(3.0)  # the definition's anchor
    # 1.110*log10(0.1) + 0.00189*(-90) + 3.0 = 3.0 - 1.110 - 0.1701
    assert hutton_boore_log_a0(10.0) == pytest.approx(1.7199, abs=1e-4)


def test_ml_of_a_known_sine_through_wood_anderson():
    freq, amp = 5.0, 2.0e-6  # 2 micrometres of ground displacement at 5 Hz
    event = _event({"AAA": 20.0, "BBB": 60.0})
    start, end = waveform_span(event)
    stream = _sine_stream("AAA", amp, freq, start, end - start) + _sine_stream("BBB", amp / 4, freq, start, end - start)
    mag = local_magnitude(event, stream, _inventory(["AAA", "BBB"]))
    # Wood-Anderson gain at f: 2080 w^2 / |w0^2 - w^2 + 2 i h w0 w|, w0 = 2 pi / 0.8 s, h = 0.8
    w, w0, h = 2 * math.pi * freq, 2 * math.pi / 0.8, 0.8
    gain = 2080 * w**2 / abs(complex(w0**2 - w**2, 2 * h * w0 * w))
    expected = {}
    for code, a, epi in (("AAA", amp, 20.0), ("BBB", amp / 4, 60.0)):
        r = math.hypot(epi, 8.0)
        expected[code] = math.log10(a * gain * 1000) + 1.110 * math.log10(r / 100) + 0.00189 * (r - 100) + 3.0
    got = {s.station.station: s.value for s in mag.station_magnitudes}
    assert got == pytest.approx(expected, abs=0.02)
    assert mag.value == pytest.approx(np.median(list(expected.values())), abs=0.02)
    assert mag.station_count == 2 and mag.uncertainty is not None and mag.reason is None


def test_amplitude_window_spans_p_to_after_s():
    event = _event({"AAA": 30.0})
    start, end = amplitude_window(event, StationKey("XX", "AAA", "", "HH"))
    r = math.hypot(30.0, 8.0)
    assert start == pytest.approx(T0 + r / 6.0 - 1.0)
    assert end == pytest.approx(T0 + r / 3.5 + max(5.0, 2 * (r / 3.5 - r / 6.0)))


def test_no_magnitude_without_responses_and_the_reason_is_kept():
    event = _event({"AAA": 20.0})
    start, end = waveform_span(event)
    stream = _sine_stream("AAA", 1e-6, 5.0, start, end - start)
    none = local_magnitude(event, stream, None)
    assert none.value is None and "no StationXML" in none.reason
    other = local_magnitude(event, stream, _inventory(["ZZZ"]))
    assert other.value is None and "XX.AAA." in other.reason and "response" in other.reason
    short = local_magnitude(event, stream.slice(UTCDateTime(start), UTCDateTime(start + 5)), _inventory(["AAA"]))
    assert short.value is None and "does not cover" in short.reason


@pytest.mark.slow
def test_real_salton_sea_response_removal(shared):
    """A real CI station and its real StationXML: the Wood-Anderson trace is finite and in a sane range."""
    folder = shared / "data" / "salton_sea_2020"
    inventory = read_inventory(str(folder / "stations.xml"))
    path = sorted((folder / "mseed").glob("*"))[0]
    stream = read(str(path))
    tr = stream[0]
    key = StationKey(tr.stats.network, tr.stats.station, tr.stats.location, tr.stats.channel[:2])
    t = tr.stats.starttime.timestamp + 60.0
    event = Event(Origin(t, 33.0, -115.6, 8.0, 0.1, "test"),
                  (Arrival(Pick(key, "P", t + 3.0, 0.9), 0.0, 15.0), Arrival(Pick(key, "S", t + 5.5, 0.9), 0.0, 15.0)))
    mag = local_magnitude(event, stream, inventory)
    assert mag.value is not None, mag.reason
    # three minutes in the Westmorland swarm: anything between ambient noise and a M5 at 15 km
    assert -2.0 < mag.value < 5.0
    assert 0 < mag.station_magnitudes[0].amplitude_m < 1e-2
