"""The event plot: drawing from arrays, station order, and the model re-run on real data."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from obspy import Stream, Trace, UTCDateTime, read

from eqt_monitor.plot import model_probabilities, plot_event, stations_by_distance
from eqt_monitor.records import Arrival, Event, Origin, Pick, ProbabilitySegment, StationKey

T0 = 1601510400.0


def _stream(key: StationKey, start: float, seconds: float, seed: int) -> Stream:
    rng = np.random.default_rng(seed)
    traces = []
    for c in "ENZ":
        header = {"network": key.network, "station": key.station, "location": key.location,
                  "channel": f"{key.channel_prefix}{c}", "sampling_rate": 100.0, "starttime": UTCDateTime(start)}
        traces.append(Trace(rng.normal(0, 100, int(seconds * 100)).astype(np.int32), header=header))
    return Stream(traces)


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_from_arrays(tmp_path):
    near, far, silent = (StationKey("XX", s, "", "HH") for s in ("NEAR", "FAR", "GONE"))
    arrivals = (Arrival(Pick(far, "P", T0 + 6.0, 0.8), 0.1, 35.0), Arrival(Pick(near, "P", T0 + 2.0, 0.9), 0.0, 8.0),
                Arrival(Pick(near, "S", T0 + 3.5, 0.7), -0.1, 8.0), Arrival(Pick(silent, "P", T0 + 4, 0.5), 0.0, 20.0))
    event = Event(Origin(T0, 33.0, -115.6, 6.0, 0.1, "test"), arrivals, id="smi:eqt-monitor/event/abc")
    stream = _stream(near, T0 - 30, 90, 1) + _stream(far, T0 - 30, 90, 2)
    n = 4000
    probs = {k: ProbabilitySegment(k, T0 - 10, np.linspace(0, 1, n, dtype=np.float32),
                                   np.zeros(n, np.float32), np.full(n, 0.5, np.float32)) for k in (near, far)}
    distances = {a.pick.station: a.distance_km for a in arrivals}
    assert stations_by_distance(distances, stream, probs) == [near, far]  # GONE has no data
    out = plot_event(event, stream, probs, tmp_path / "e.png")
    width, height = _png_size(out)
    assert width == 1100 and height > 400  # 10 in at 110 dpi; two stations, two panels each
    with pytest.raises(ValueError, match="no waveforms"):
        plot_event(event, Stream(), {}, tmp_path / "none.png")


@pytest.mark.slow
def test_model_probabilities_on_real_data(shared, original_weights):
    """The original EqT re-run over two minutes of a real Salton Sea station, through the streaming engine."""
    from eqt_monitor.driver import config_of_run
    from eqt_monitor.model.load import load_model

    path = sorted((shared / "data" / "salton_sea_2020" / "mseed").glob("*.mseed"))[0]
    stream = read(str(path))
    tr = stream[0]
    key = StationKey(tr.stats.network, tr.stats.station, tr.stats.location, tr.stats.channel[:2])
    stream.trim(tr.stats.starttime, tr.stats.starttime + 120)
    model = load_model("original", original_weights)
    probs = model_probabilities(stream, model.predict, config_of_run(None, [key]))
    seg = probs[key]
    assert abs(seg.start - tr.stats.starttime.timestamp) < 0.02
    assert seg.end > tr.stats.starttime.timestamp + 110
    finite = seg.detection[np.isfinite(seg.detection)]
    assert finite.size > 0.9 * len(seg.detection) and finite.min() >= 0 and finite.max() <= 1
