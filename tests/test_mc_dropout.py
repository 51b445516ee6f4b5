"""Monte-Carlo dropout (``model.mc_dropout``) on real stead50 quakes: seeded, close to the deterministic
model, and its spreads in the picks, the catalog, the EqT CSV and QuakeML."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from eqt_monitor.catalog.export import export_quakeml, write_eqt_csv
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.driver import CatalogWriter
from eqt_monitor.pipeline.engine import Engine, EngineConfig
from eqt_monitor.pipeline.picker import IncrementalPicker, PickerConfig, time_uncertainty
from eqt_monitor.pipeline.windows import normalize
from eqt_monitor.records import Arrival, Event, Origin, Segment, StationKey

N_TRACES, SAMPLES, SEED = 3, 20, 7


def test_time_uncertainty_is_half_the_width_within_one_std():
    mean = np.array([0.0, 0.2, 0.6, 0.9, 0.7, 0.3, 0.0])
    std = np.full(7, 0.25)  # 0.9 - 0.25 = 0.65: samples 3 and 4 -> 2 samples -> 0.01 s
    assert time_uncertainty(mean, std, 3) == 0.01
    assert time_uncertainty(mean, np.zeros(7), 3) == 0.005  # no spread: half a sample



def mc_stretch(n: int = 8000) -> np.ndarray:
    """(n, 6) [D, P, S means, D, P, S stds]: a detection over 20-24 s, a P at 20.5 s whose std
    (0.6) exceeds its mean (0.5), a clear S at 23 s (mean 0.8, std 0.1)."""
    x = np.arange(n)
    probs = np.zeros((n, 6), np.float32)
    probs[2000:2400, 0] = 0.9
    probs[:, 1] = 0.5 * np.exp(-0.5 * ((x - 2050) / 5.0) ** 2)
    probs[:, 2] = 0.8 * np.exp(-0.5 * ((x - 2300) / 5.0) ** 2)
    probs[:, 4], probs[:, 5] = 0.6, 0.1
    return probs


def picked_uncertainties(probs: np.ndarray, piece: int) -> list[tuple[float, float]]:
    """(P, S) time uncertainties of the detections, the stretch pushed ``piece`` samples at a time."""
    picker, found = IncrementalPicker(PickerConfig()), []
    for i in range(0, len(probs), piece):
        found += picker.push(probs[i:i + piece], np.zeros((len(probs[i:i + piece]), 3), np.float32),
                             stretch_ended=i + piece >= len(probs))
    return [(e.p.time_uncertainty, e.s.time_uncertainty) for e in found]


def test_time_uncertainty_does_not_depend_on_how_much_is_held():
    """A pick whose std reaches its mean has no run within one std to measure: its value is the
    searched window's (±1 s), whether the picker held 1000 samples or the whole 8000; a clear pick
    keeps its run (mean >= 0.7 for |t - 23 s| <= 2.58 samples: 5 samples, 0.025 s)."""
    probs = mc_stretch()
    by_piece = picked_uncertainties(probs, 1000)
    assert by_piece == picked_uncertainties(probs, len(probs)) == [(1.005, 0.025)]


@pytest.mark.slow
def test_mc_dropout_on_stead50(shared, original_weights, tmp_path):
    from eqt_monitor.model.load import load_model, load_predictor
    from eqt_monitor.training.stead import SteadDataset

    with SteadDataset(shared / "data/stead50/waveforms.hdf5", shared / "data/stead50/metadata.csv") as stead:
        traces = [t for _, t in zip(range(N_TRACES), (t for t in stead if t.is_earthquake))]
    raw = np.stack([t.data for t in traces])
    batch = normalize(raw)
    deterministic = load_model("original", original_weights).predict(batch)
    first = load_predictor("original", original_weights, mc_dropout=SAMPLES, seed=SEED)[1]
    out = first(batch)
    again = load_predictor("original", original_weights, mc_dropout=SAMPLES, seed=SEED)[1](batch)
    np.testing.assert_array_equal(out, again)  # the same seed, the same samples
    # a window's samples depend on the seed and the window only, not on the batch it is in
    np.testing.assert_array_equal(first(batch[[2, 0]]), out[[2, 0]])
    assert out.shape == (N_TRACES, 6000, 6) and out[..., 3:].max() > 0
    peaks_mc, peaks_det = out[..., :3].max(axis=1), deterministic.max(axis=1)
    print("peak D/P/S deterministic", peaks_det.round(3).tolist(), "MC mean", peaks_mc.round(3).tolist())
    assert np.abs(peaks_mc - peaks_det).max() < 0.1

    # the engine over each trace as a one-window stretch: the picks and detections carry the spreads
    engine = Engine(first, EngineConfig(uncertainty=True))
    keys = [StationKey("ST", f"S{i}", "", "HH") for i in range(N_TRACES)]
    for i, (key, data) in enumerate(zip(keys, raw)):
        engine.feed(Segment(key, 1.6e9 + 100 * i, data, stretch_start=True, stretch_end=True))
    result = engine.process(flush=True)
    assert result.detections and result.picks
    assert all(d.probability_std is not None for d in result.detections)
    assert all(p.probability_std is not None and p.time_uncertainty > 0 for p in result.picks)
    db = tmp_path / "c.sqlite"
    with Catalog(db) as catalog:
        writer = CatalogWriter(catalog, model="original", weights_sha256="mc")
        picks = writer.stamp(result.picks)
        writer.write(picks, result.detections)
        catalog.add_events([Event(Origin(picks[0].time - 5, 0.0, 0.0, 10.0, None, "test"), (Arrival(picks[0], 0.0, 30.0),))])
        write_eqt_csv(catalog, tmp_path / "eqt.csv")
        export_quakeml(catalog, tmp_path / "c.xml")
    rows = list(csv.DictReader(open(tmp_path / "eqt.csv")))
    assert rows and all(r["detection_uncertainty"] for r in rows)
    assert any(r["p_uncertainty"] for r in rows) and any(r["s_uncertainty"] for r in rows)
    assert all(r["p_uncertainty"] or not r["p_arrival_time"] for r in rows)
    assert f"<uncertainty>{picks[0].time_uncertainty}</uncertainty>" in (tmp_path / "c.xml").read_text()


def test_schema_1_catalog_is_migrated(tmp_path):
    """A version-1 file gains the uncertainty columns; its picks read back without them."""
    import sqlite3

    from catalog_v2 import V2_SCHEMA

    from eqt_monitor.catalog import schema

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    v1 = V2_SCHEMA.replace(",\n    probability_std REAL, time_uncertainty REAL", "").replace(",\n    probability_std REAL", "")
    db.executescript(v1 + "PRAGMA user_version=1;")
    db.execute("INSERT INTO picks VALUES ('smi:x/pick/1','CX','PB01','','HH','P',1.0,100,0.5,NULL,NULL,'original','s')")
    db.commit()
    db.close()
    with Catalog(path) as catalog:
        assert catalog.schema_version == schema.SCHEMA_VERSION
        (pick,) = catalog.picks()
        assert pick.probability == 0.5 and pick.probability_std is None and pick.time_uncertainty is None


@pytest.mark.slow
def test_mc_dropout_in_the_daemon_is_reproducible_and_equals_the_mc_replay(shared, original_weights, sds, tmp_path):
    """``eqt-monitor run`` with ``model.mc_dropout: 5`` (``mc_seed: 3``) twice against the simulator on chile
    00:35-00:41 at 60x: every pick carries its spread and time uncertainty, both runs write the same
    ones, and they are the serial Monte-Carlo replay's (from CONTEXT_S after the start up to the settled time)."""
    from types import SimpleNamespace

    from daemon_harness import ROOT, daemon, free_port, simulate, station_entries, wait_for, write_config
    from eqt_monitor.config import load_config
    from eqt_monitor.model.load import load_predictor
    from eqt_monitor.pipeline.engine import CONTEXT_S
    from test_daemon import _scrape_or_none, replay_settled_picks, settle_and_stop, T
    from test_replay import assert_same_picks

    start, end = "2014-05-01T00:35:00", "2014-05-01T00:41:00"
    entries = station_entries(load_config(ROOT / "stations.yaml"))
    runs = []
    for n in range(2):
        folder = tmp_path / f"run{n}"
        folder.mkdir()
        config_path = write_config(folder, entries, original_weights, "  mc_dropout: 5\n  mc_seed: 3\n")
        port, mport = free_port(), free_port()
        run = daemon(config_path, f"seedlink://127.0.0.1:{port}", mport, folder / "run.log", start)
        wait_for(lambda: _scrape_or_none(mport), 120, "the daemon's metrics endpoint")
        server = simulate(f"sds://{sds}", port, 60, folder / "simulate.log", start, end)
        final, _ = settle_and_stop(run, server, folder / "catalog.sqlite", lambda: "all data up to" in server.text(),
                                   2, T(end) - 200)
        with Catalog(folder / "catalog.sqlite") as catalog:
            runs.append((final, catalog.picks()))
    (final0, picks0), (final1, picks1) = runs
    assert len(picks0) >= 5 and all(p.probability_std is not None and p.time_uncertainty for p in picks0)

    def uncertainty(picks, until):
        return sorted((p.station.id, p.phase, p.time, p.probability, p.probability_std, p.time_uncertainty)
                      for p in picks if p.time < until[p.station.id])

    common = {k: min(final0[k], final1[k]) for k in final0}
    assert uncertainty(picks0, common) == uncertainty(picks1, common)  # the same seed, the same picks

    loaded, predict = load_predictor("original", original_weights, mc_dropout=5, seed=3)
    config = load_config(tmp_path / "run0" / "stations.yaml")
    # the archive goes on before `start`: replay's first windows see earlier data, the stream's do not
    from_ = T(start) + CONTEXT_S
    expected = [p for p in replay_settled_picks(SimpleNamespace(predict=predict, weights_sha256=loaded.weights_sha256),
                                                config, T(start), T(end), f"sds://{sds}", final0) if p.time >= from_]
    picks0 = [p for p in picks0 if p.time >= from_]
    assert expected
    assert_same_picks(picks0, expected)
    key = lambda p: (p.station, p.phase, p.time)  # noqa: E731
    for a, b in zip(sorted(picks0, key=key), sorted(expected, key=key)):
        assert a.time_uncertainty == b.time_uncertainty and abs(a.probability_std - b.probability_std) <= 1e-5
