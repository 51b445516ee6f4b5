"""``eqt-monitor plot --helicorder``: a station's dayplot from the archive with the catalog's picks and events."""
from __future__ import annotations

import struct
import subprocess
import sys

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
