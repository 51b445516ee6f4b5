"""Data quality as live metrics (issue 17 item 3 in the daemon): ``eqt-monitor run`` against
``eqt-monitor simulate`` on real Salton Sea data exposes each station's PSD band levels against the
NLNM/NHNM, clipped samples and flat channels in ``/metrics``, and a station whose data carries added
white noise gets a higher PSD.

The data is 3 minutes long, so the job runs every 5 s over the newest 120 s of each station with
60 s PPSD segments (3 segments at ObsPy's 50 % overlap; a 60 s segment resolves periods up to
~10 s, so the 10-100 s band holds only its shortest bins).
"""
from __future__ import annotations

import re
import shutil

import numpy as np
import obspy
import pytest

from daemon_harness import daemon, free_port, scrape, simulate, total, wait_for, write_config
from eqt_monitor.qc import QCSettings, station_quality
from eqt_monitor.records import StationKey
from test_daemon import SALTON_T0, _scrape_or_none
from test_status_page import fetch, records_still, station_cells

pytestmark = pytest.mark.slow

SPAN, PPSD_LENGTH, SIGMA = 120.0, 60.0, 2000.0  # s, s, counts of the added noise
BAND = "0.1-1s"


def _noisy_copy(shared, folder):
    """CI.BOM as it is, and CI.BON: BOM's data plus seeded white noise (std SIGMA counts), with BOM's
    metadata under the new code; returns the inventory path."""
    folder.mkdir()
    src = next((shared / "data/salton_sea_2020/mseed").glob("CI.BOM.*.mseed"))
    shutil.copy(src, folder / src.name)
    st = obspy.read(str(src))
    rng = np.random.default_rng(17)
    for tr in st:
        tr.stats.station = "BON"
        tr.data = (tr.data + rng.normal(0.0, SIGMA, tr.stats.npts)).round().astype(np.int32)
    st.write(str(folder / src.name.replace("BOM", "BON")), format="MSEED", encoding="STEIM2")
    inventory = obspy.read_inventory(str(shared / "data/salton_sea_2020/stations.xml")).select(station="BOM")
    twin = inventory.copy()
    twin[0][0].code = "BON"
    inventory[0].stations.append(twin[0][0])
    path = folder.parent / "stations.xml"
    inventory.write(str(path), format="STATIONXML")
    return path


def _quality(values: dict[str, float], name: str) -> dict[tuple, float]:
    """``{(station, channel[, band[, unit]]): value}`` of one quality family."""
    out = {}
    for series, value in values.items():
        if series.startswith(name + "{"):
            labels = dict(re.findall(r'([a-z]+)="([^"]*)"', series))
            out[tuple(labels[k] for k in ("station", "channel", "band", "unit") if k in labels)] = value
    return out


def test_quality_metrics_of_a_live_run_and_a_noisier_station(shared, original_weights, tmp_path, capsys):
    inventory = _noisy_copy(shared, tmp_path / "mseed")
    archive = f"file://{tmp_path / 'mseed'}"
    config = write_config(tmp_path, f"  - inventory: {inventory}\n", original_weights)
    port, mport = free_port(), free_port()
    server = simulate(archive, port, 20, tmp_path / "simulate.log")
    run = daemon(config, f"seedlink://127.0.0.1:{port}", mport, tmp_path / "run.log", SALTON_T0,
                 "--quality-every", "5", "--quality-span", str(SPAN), "--ppsd-length", str(PPSD_LENGTH))
    try:
        wait_for(lambda: _scrape_or_none(mport), 120, "the daemon's metrics endpoint")
        wait_for(lambda: "all data up to" in server.text(), 120, "the simulator to release all data")
        wait_for(lambda: records_still(mport), 60, "data to stop arriving")
        settled_at = obspy.UTCDateTime().timestamp
        checked = "eqt_monitor_quality_checked_timestamp_seconds"
        wait_for(lambda: len([v for v in _quality(scrape(mport)[1], checked).values() if v > settled_at + 1]) == 2,
                 60, "a quality run after the last data")
        names, values = scrape(mport)
        page = station_cells(fetch(f"http://127.0.0.1:{mport}/status")[2])
    finally:
        run.stop()
        server.stop()
    assert {"eqt_monitor_noise_psd_decibels", "eqt_monitor_noise_above_nlnm_decibels",
            "eqt_monitor_noise_below_nhnm_decibels", "eqt_monitor_clipped_samples", "eqt_monitor_channel_flat",
            "eqt_monitor_timing_quality_percent", "eqt_monitor_clock_locked_ratio"} <= names
    psd = _quality(values, "eqt_monitor_noise_psd_decibels")
    above = _quality(values, "eqt_monitor_noise_above_nlnm_decibels")
    below = _quality(values, "eqt_monitor_noise_below_nhnm_decibels")
    for sta in ("BOM", "BON"):
        for cha in ("HHE", "HHN", "HHZ"):
            sid = f"CI.{sta}."
            assert (sid, cha, BAND, "acceleration") in psd and (sid, cha, "1-10s", "acceleration") in psd
            assert 0 < above[(sid, cha, BAND)] < 100 and -30 < below[(sid, cha, BAND)] < 100
            assert values[f'eqt_monitor_clipped_samples{{channel="{cha}",station="{sid}"}}'] == 0
            assert values[f'eqt_monitor_channel_flat{{channel="{cha}",station="{sid}"}}'] == 0
        # the status page shows the noisiest channel's band level and the counts, as /metrics has them
        assert page[sid]["noise"] == f"{max(psd[(sid, c, BAND, 'acceleration')] for c in ('HHE', 'HHN', 'HHZ')):.1f}"
        assert page[sid]["clipped"] == page[sid]["flat"] == "0"
    # SeedLink gives no miniSEED headers to read timing from: those series stay absent
    assert not _quality(values, "eqt_monitor_timing_quality_percent")
    assert total(values, "eqt_monitor_errors_total") == total(values, 'eqt_monitor_errors_total{kind="quality"}') == 0

    # the clean station's live numbers are qc's over the same newest 120 s of the archive
    end = obspy.UTCDateTime("2020-10-01T00:03:00").timestamp
    offline = station_quality({archive: [StationKey("CI", "BOM", "", "HH")]}, end - SPAN, end, None,
                              inventory=obspy.read_inventory(str(inventory)),
                              settings=QCSettings(ppsd_length=PPSD_LENGTH))["CI.BOM."]
    for q in offline:
        assert psd[("CI.BOM.", q.channel[-3:], BAND, "acceleration")] == pytest.approx(q.bands[0].psd_db, abs=0.5)
    rise = {cha: psd[("CI.BON.", cha, BAND, "acceleration")] - psd[("CI.BOM.", cha, BAND, "acceleration")]
            for cha in ("HHE", "HHN", "HHZ")}
    with capsys.disabled():
        print(f"\n{BAND} PSD, dB rel. 1 (m/s²)²/Hz: BOM " + ", ".join(
            f"{c} {psd[('CI.BOM.', c, BAND, 'acceleration')]:.1f}" for c in rise)
              + "; with white noise (std 2000 counts) " + ", ".join(f"+{r:.1f}" for r in rise.values()))
    assert all(r > 3.0 for r in rise.values()), rise


def test_a_station_with_two_channel_groups_keeps_both_in_the_metrics(sds, tmp_path):
    """CX.PB01 configured as HH and HN (an HNZ copy of the real HHZ records): the quality job exposes
    both channels of the station (the second group does not replace the first)."""
    from test_qc import hhz_copy

    from eqt_monitor.live import metrics
    from eqt_monitor.live.quality import QualitySettings, check_stations

    hhz_copy(sds, tmp_path)
    hhz_copy(sds, tmp_path, "HNZ")
    keys = [StationKey("CX", "PB01", "", "HH"), StationKey("CX", "PB01", "", "HN")]
    end = obspy.UTCDateTime("2014-05-01T00:20").timestamp
    settings = QualitySettings(span_s=1200.0, ppsd_length_s=600.0)
    assert check_stations({f"sds://{tmp_path}": keys}, lambda key: end, None, settings) == 2
    flat = {cha: metrics.REGISTRY.get_sample_value("eqt_monitor_channel_flat", {"station": "CX.PB01.", "channel": cha})
            for cha in ("HHZ", "HNZ")}
    assert flat == {"HHZ": 0.0, "HNZ": 0.0}
    metrics.QUALITY.forget("CX.PB01.")
