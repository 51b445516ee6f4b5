"""``eqt-monitor qc`` on real data: PPSD PNGs for chile_2014, and the band PSD of a noisier copy."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import obspy
import pytest

from eqt_monitor.qc import QCSettings, station_quality
from eqt_monitor.records import StationKey

START, END = "2014-05-01T00:00", "2014-05-01T01:00"
PB01 = StationKey("CX", "PB01", "", "HH")


@pytest.mark.slow
def test_qc_command_writes_ppsd_pngs(sds, tmp_path):
    """One hour of CX.PB01/PB02 (no StationXML: PSDs in counts): a PNG per channel and quality.json."""
    config = tmp_path / "stations.yaml"
    stations = "".join(f"  - {{network: CX, station: {s}, channels: 'HH?'}}\n" for s in ("PB01", "PB02"))
    config.write_text(f"source: sds://{sds}\nstations:\n{stations}")
    out = tmp_path / "qc"
    result = subprocess.run([sys.executable, "-m", "eqt_monitor.cli", "qc", "--config", str(config), "--start", START,
                             "--end", END, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"CX.{s}..HH{c}.ppsd.png" for s in ("PB01", "PB02") for c in "ENZ"]
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "no response in the inventory" in result.stderr  # one line per channel without a response
    quality = json.loads((out / "quality.json").read_text())
    z = next(q for q in quality["CX.PB01."] if q["channel"].endswith("HHZ"))
    assert z["unit"] == "counts" and z["segments"] == 1 and z["clipped_samples"] == 0 and not z["flat_hours"]
    assert z["records"] > 0 and z["clock_locked_percent"] is not None
    assert all(b["psd_db"] is not None and b["above_nlnm_db"] is None for b in z["bands"])


@pytest.mark.slow
def test_white_noise_raises_band_psd(sds, tmp_path):
    """Seeded white noise of std 2000 counts (one-sided PSD 2σ²/fs) added to a copy of PB01 HHZ:
    the 0.1–1 s band rises to the power sum of the original level and the noise's."""
    t0, t1 = obspy.UTCDateTime(START), obspy.UTCDateTime(END)
    day = "2014/CX/PB01/HHZ.D/CX.PB01..HHZ.D.2014.121"
    st = obspy.read(str(sds / day), starttime=t0 - 60, endtime=t1 + 60)
    (tmp_path / "clean" / day).parent.mkdir(parents=True)
    st.write(str(tmp_path / "clean" / day), format="MSEED")
    sigma = 2000.0
    rng = np.random.default_rng(17)
    for tr in st:
        tr.data = (tr.data + rng.normal(0.0, sigma, tr.stats.npts)).round().astype(np.int32)
    (tmp_path / "noisy" / day).parent.mkdir(parents=True)
    st.write(str(tmp_path / "noisy" / day), format="MSEED", encoding="STEIM2")

    def band(root: str) -> float:
        result = station_quality({f"sds://{tmp_path / root}": [PB01]}, t0.timestamp, t1.timestamp,
                                 tmp_path / f"out-{root}", settings=QCSettings())
        return result[PB01.id][0].bands[0].psd_db

    clean, noisy = band("clean"), band("noisy")
    noise_db = 10 * math.log10(2 * sigma ** 2 / 100.0)
    expected = 10 * math.log10(10 ** (clean / 10) + 10 ** (noise_db / 10))
    print(f"0.1-1 s band: clean {clean:.2f} dB, noisy {noisy:.2f} dB, expected {expected:.2f} dB (noise alone {noise_db:.2f})")
    assert noisy - clean > 10.0
    assert abs(noisy - expected) < 1.5
