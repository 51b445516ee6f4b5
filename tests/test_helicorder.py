"""``eqt-monitor plot --helicorder``: a station's dayplot from the archive with the catalog's picks and events."""
from __future__ import annotations

import struct
import subprocess
import sys

import mseed_records
import pytest
from obspy import UTCDateTime

from eqt_monitor.catalog.store import Catalog
from eqt_monitor.driver import CatalogWriter
from eqt_monitor.helicorder import pick_position
from eqt_monitor.records import Arrival, Event, Origin, Pick, Run, StationKey

PB01 = StationKey("CX", "PB01", "", "HH")
T0 = UTCDateTime("2014-05-01T00:00").timestamp


def test_pick_position_follows_the_dayplot_lines():
    """Line 0 (the top, y = n - 0.5) holds the first interval; x runs across it."""
    assert pick_position(T0, T0, T0 + 7200, 900, 1000) == (0.0, 7.5)
    assert pick_position(T0 + 900 + 450, T0, T0 + 7200, 900, 1000) == (500.0, 6.5)


@pytest.mark.slow
def test_helicorder_png_with_picks(sds, tmp_path):
    """Two hours of CX.PB01 with picks written through the CatalogWriter and one associated event."""
    db = tmp_path / "catalog.sqlite"
    with Catalog(db) as catalog:
        writer = CatalogWriter(catalog, model="original", weights_sha256="test")
        times = [(600.0, "P"), (612.5, "S"), (2710.0, "P"), (2718.0, "S"), (5400.0, "P")]
        picks = writer.stamp([Pick(PB01, phase, T0 + t, 0.8) for t, phase in times])
        writer.write(picks, [])
        catalog.add_run(Run(0.0, f"sds://{sds}", "original", "test", {}))
        catalog.add_events([Event(Origin(T0 + 595.0, -21.0, -69.5, 30.0, 0.1, "test"),
                                  (Arrival(picks[0], 0.0, 20.0), Arrival(picks[1], 0.0, 20.0)))])
    out = tmp_path / "heli.png"
    result = subprocess.run([sys.executable, "-m", "eqt_monitor.cli", "plot", "--helicorder", "CX.PB01", "--day",
                             "2014-05-01", "--start", "00:00", "--end", "02:00", "--db", str(db), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "5 picks, 1 events" in result.stdout
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1100, 900)
    bad = subprocess.run([sys.executable, "-m", "eqt_monitor.cli", "plot", "--helicorder", "CX", "--day", "2014-05-01",
                          "--db", str(db), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("expected NET.STA, got 'CX'")


@pytest.mark.slow
def test_helicorder_ticks_equal_the_replayed_catalog(sds, original_weights, tmp_path):
    """A real replay of CX.PB01 (00:00-02:00, with the M~4 at 00:38) into a catalog: the drawn ticks
    are the catalog's picks of the span, phase by phase (counted in SQL) and each at its pick's time."""
    import sqlite3

    import numpy as np

    from eqt_monitor.config import MonitorConfig, StationConfig
    from eqt_monitor.driver import read_span
    from eqt_monitor.helicorder import PHASE_COLOURS, draw_helicorder
    from eqt_monitor.model.load import load_model
    from eqt_monitor.replay import replay_into_catalog

    start, end = T0, T0 + 7200.0
    model = load_model("original", original_weights)
    db = tmp_path / "catalog.sqlite"
    config = MonitorConfig(path=None, stations=[StationConfig(PB01)], sources=[f"sds://{sds}"])
    with Catalog(db) as catalog:
        replay_into_catalog(config, catalog, start=start, end=end, predict_fn=model.predict, model_name="original",
                            weights_sha256=model.weights_sha256, locate=False, progress=False)
        picks = catalog.picks(start, end, stations=[PB01])
    with sqlite3.connect(db) as con:
        counted = dict(con.execute("SELECT phase, COUNT(*) FROM picks WHERE station = 'PB01' AND time >= ? "
                                   "AND time < ? GROUP BY phase", (start, end)).fetchall())
        times = {ph: sorted(t for (t,) in con.execute("SELECT time FROM picks WHERE phase = ? AND time >= ? AND "
                                                        "time < ?", (ph, start, end))) for ph in counted}
    assert counted.get("P", 0) > 10 and counted.get("S", 0) > 10, counted

    fig = draw_helicorder(read_span([f"sds://{sds}"], [PB01], start, end), picks, [], start, end)
    ax = fig.axes[0]
    ticks = {c.get_label().split()[0]: c for c in ax.collections if c.get_label().endswith(" picks")}
    assert {ph: len(c.get_segments()) for ph, c in ticks.items()} == counted
    width, lines = ax.get_xlim()[1] + 1, 8  # the dayplot's columns (axis ends at width - 1); 2 h of lines
    for phase, collection in ticks.items():
        assert tuple(collection.get_colors()[0][:3]) == pytest.approx(_rgb(PHASE_COLOURS[phase]))
        # back from (x, line) to a time: line 0 is the top one, x spans the line's 900 s
        drawn = sorted(start + (lines - 0.5 - seg[:, 1].mean()) * 900.0 + seg[0, 0] / width * 900.0
                       for seg in collection.get_segments())
        assert np.allclose(drawn, times[phase], atol=1e-3), phase


def _rgb(name: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(name)


@pytest.mark.slow
def test_helicorder_of_a_station_with_a_location_code_and_no_picks(sds, tmp_path):
    """CX.PB01's real HHZ records under location 00, a catalog that knows the station (the run's
    coordinates) but has no pick in the hour: the helicorder finds the 00 waveforms."""
    from eqt_monitor.config import MonitorConfig, StationConfig

    mseed_records.copy_day_file(sds, tmp_path / "sds", "2014/CX/PB01/HHZ.D/CX.PB01..HHZ.D.2014.121", location="00")
    key = StationKey("CX", "PB01", "00", "HH")
    db = tmp_path / "catalog.sqlite"
    with Catalog(db) as catalog:
        config = MonitorConfig(path=None, stations=[StationConfig(key, -21.04, -69.49, 900.0)])
        CatalogWriter(catalog, model="original", weights_sha256="test").record_run(
            config, [f"sds://{tmp_path / 'sds'}"], {})
    out = tmp_path / "heli.png"
    result = subprocess.run([sys.executable, "-m", "eqt_monitor.cli", "plot", "--helicorder", "CX.PB01", "--day",
                             "2014-05-01", "--start", "00:00", "--end", "01:00", "--db", str(db), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "0 picks, 0 events" in result.stdout and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.parametrize("minutes", [120, 110])  # a whole number of 15 min lines, and a last line cut short
def test_ticks_sit_where_obspy_puts_an_event_at_the_same_time(sds, minutes):
    """ObsPy's dayplot draws each of its events as a star at its own time → (x, line) mapping: an
    event at each pick's time puts a star at the centre of that pick's tick, on real PB01 data
    (picks at line starts and ends, and within lines)."""
    import numpy as np

    from eqt_monitor.driver import read_span
    from eqt_monitor.helicorder import draw_helicorder

    start, end = T0, T0 + minutes * 60.0
    offsets = [0.0, 0.01, 123.4, 899.99, 900.0, 2281.7, 3600.0, 5399.5, minutes * 60.0 - 0.5]
    picks = [Pick(PB01, "PS"[i % 2], start + t, 0.8) for i, t in enumerate(offsets)]
    events = [Event(Origin(p.time, -21.0, -69.5, 30.0, 0.1, "test"), (Arrival(p, 0.0, 20.0),)) for p in picks]
    fig = draw_helicorder(read_span([f"sds://{sds}"], [PB01], start, end), picks, events, start, end)
    ax = fig.axes[0]
    stars = sorted((float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in ax.lines
                   if line.get_marker() == "*")
    ticks = sorted((float(seg[0, 0]), float(seg[:, 1].mean())) for c in ax.collections
                   if c.get_label().endswith(" picks") for seg in c.get_segments())
    assert len(stars) == len(ticks) == len(offsets)
    assert np.allclose(ticks, stars, rtol=0, atol=1e-6), (ticks, stars)
