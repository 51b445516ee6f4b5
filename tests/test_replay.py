"""replay over the real archives in ../shared with the published original weights."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import obspy
import pytest

from eqt_monitor.catalog.store import Catalog
from eqt_monitor.config import MonitorConfig, StationConfig, config_from_inventory, load_config
from eqt_monitor.records import StationKey
from eqt_monitor.replay import replay
from fdsn_server import build_index, dataselect_server

ROOT = Path(__file__).resolve().parents[1]
T = lambda s: obspy.UTCDateTime(s).timestamp  # noqa: E731


@pytest.fixture(scope="module")
def model(original_weights):
    from eqt_monitor.model.load import load_model

    return load_model("original", original_weights)


def run(model, config, start, end, **kwargs):
    return replay(config, start=start, end=end, predict_fn=model.predict, model_name="original",
                  weights_sha256=model.weights_sha256, progress=False, **kwargs)


def data_span(files) -> dict[str, tuple[float, float]]:
    """First and last sample time per NET.STA.LOC over all components, read from the files themselves."""
    spans: dict[str, tuple[float, float]] = {}
    for f in files:
        for tr in obspy.read(str(f), headonly=True):
            key = f"{tr.stats.network}.{tr.stats.station}.{tr.stats.location}"
            lo, hi = spans.get(key, (tr.stats.starttime.timestamp, tr.stats.endtime.timestamp))
            spans[key] = (min(lo, tr.stats.starttime.timestamp), max(hi, tr.stats.endtime.timestamp))
    return spans


def ridgecrest_config(shared) -> MonitorConfig:
    keys = [StationKey("PB", s, "", "EH") for s in ("B916", "B917", "B918", "B921")]
    return MonitorConfig(path=None, stations=[StationConfig(k) for k in keys],
                         sources=[f"file://{shared}/data/ridgecrest_2019/*.mseed"])


def assert_same_picks(got, expected):
    """Same station, phase, time, SNR and amplitude; probabilities to 1e-5 (TensorFlow's CPU kernels
    round differently with the batch a window shares, by up to a few 1e-7 here)."""
    key = lambda p: (p.station, p.phase, p.time)  # noqa: E731
    got, expected = sorted(got, key=key), sorted(expected, key=key)
    assert [(key(p), p.snr, p.amplitude) for p in got] == [(key(p), p.snr, p.amplitude) for p in expected]
    assert max(abs(a.probability - b.probability) for a, b in zip(got, expected)) <= 1e-5


def assert_covers(summary, spans):
    assert {k.id for k in summary.coverage} == set(spans)
    for key, (first, last) in summary.coverage.items():
        lo, hi = spans[key.id]
        assert abs(first - lo) <= 0.01 and abs(last - hi) <= 0.01, (key, first - lo, last - hi)


@pytest.mark.slow
def test_salton_sea_16_stations_cover_every_sample(shared, model, tmp_path):
    config = config_from_inventory(shared / "data/salton_sea_2020/stations.xml",
                                   [f"file://{shared}/data/salton_sea_2020/mseed"])
    spans = data_span((shared / "data/salton_sea_2020/mseed").iterdir())
    with Catalog(tmp_path / "c.sqlite") as catalog:
        summary, picks, _ = run(model, config, T("2020-10-01"), T("2020-10-01T00:05"), catalog=catalog)
        assert summary.stations == 16
        assert_covers(summary, spans)
        # A swarm is under way: most stations pick both phases.
        stations_with_p = {p.station for p in picks if p.phase == "P"}
        assert len(stations_with_p) >= 10
        assert summary.new_picks == len(picks) > 0
        again, _, _ = run(model, config, T("2020-10-01"), T("2020-10-01T00:05"), catalog=catalog)
        assert again.new_picks == 0 and again.picks == summary.picks
        assert len(catalog.picks()) == len(picks)


@pytest.mark.slow
def test_ridgecrest_whole_equals_pieces_and_covers_every_sample(shared, model):
    config = ridgecrest_config(shared)
    start, end = T("2019-07-07T07:50"), T("2019-07-07T09:10")
    whole, picks, dets = run(model, config, start, end)
    assert_covers(whole, data_span((shared / "data/ridgecrest_2019").glob("*.mseed")))
    assert len(picks) > 50  # 80 minutes into the M7.1 aftershock sequence
    # split at arbitrary times, not on the window grid
    cuts = [start, T("2019-07-07T08:13:17.37"), T("2019-07-07T08:41:05.91"), end]
    pieces = []
    for a, b in zip(cuts, cuts[1:]):
        pieces += run(model, config, a, b)[1]
    assert_same_picks(pieces, picks)


@pytest.mark.slow
def test_chile_sds_twelve_hours_cover_every_sample(shared, model, tmp_path):
    config = load_config(ROOT / "stations.yaml")
    summary, picks, _ = run(model, config, T("2014-05-01"), T("2014-05-01T12:00"), probabilities=tmp_path / "prob")
    spans = data_span((shared / "data/chile_2014/sds").rglob("*.D.2014.121"))
    assert_covers(summary, spans)
    assert summary.station_hours == pytest.approx(24.0, abs=0.01)
    # the probability traces written to miniSEED cover the same samples
    for key, (lo, hi) in spans.items():
        st = obspy.read(str(tmp_path / "prob" / f"{key}.HX.mseed")).merge()
        assert sorted(tr.stats.channel for tr in st) == ["HXD", "HXP", "HXS"]
        for tr in st:
            assert abs(tr.stats.starttime.timestamp - lo) <= 0.01 and abs(tr.stats.endtime.timestamp - hi) <= 0.01
            assert 0.0 <= tr.data.min() and tr.data.max() <= 1.0
    assert {p.phase for p in picks} == {"P", "S"}


@pytest.mark.slow
def test_fdsn_and_files_give_identical_picks(shared, model, tmp_path):
    files = sorted((shared / "data/salton_sea_2020/mseed").iterdir())
    build_index(files, tmp_path / "index.sqlite")
    base = config_from_inventory(shared / "data/salton_sea_2020/stations.xml")
    start, end = T("2020-10-01T00:00"), T("2020-10-01T00:03")
    from_files = run(model, base, start, end, source=f"file://{shared}/data/salton_sea_2020/mseed")[1]
    with dataselect_server(tmp_path / "index.sqlite", tmp_path) as address:
        from_fdsn = run(model, base, start, end, source=f"fdsn://{address}")[1]
    assert len(from_files) > 20
    assert_same_picks(from_fdsn, from_files)


@pytest.mark.slow
def test_cli_replay_prints_one_summary_line(shared, original_weights, tmp_path):
    db = tmp_path / "catalog.sqlite"
    cmd = [sys.executable, "-m", "eqt_monitor.cli", "replay", "--config", str(ROOT / "stations.yaml"),
           "--start", "2014-05-01T00:00", "--end", "2014-05-01T00:10", "--weights", str(original_weights), "--db", str(db)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "EQT_SHARED": str(shared)})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("replay: 2 stations, 0.33 station-hours"), lines
    with Catalog(db) as catalog:
        assert len(catalog.picks()) == int(lines[0].split(" picks")[0].rsplit(" ", 1)[1])


def test_bad_span_and_missing_source_are_one_line_errors(tmp_path):
    result = subprocess.run([sys.executable, "-m", "eqt_monitor.cli", "replay", "--inventory", str(tmp_path / "x.xml"),
                             "--start", "yesterday", "--end", "2020-01-01"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("eqt-monitor: error: ")
    assert "x.xml" in result.stderr
