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
from eqt_monitor.pipeline.picker import time_uncertainty
from eqt_monitor.pipeline.windows import normalize
from eqt_monitor.records import Arrival, Event, Origin, Segment, StationKey

N_TRACES, SAMPLES, SEED = 3, 20, 7


def test_time_uncertainty_is_half_the_width_within_one_std():
    mean = np.array([0.0, 0.2, 0.6, 0.9, 0.7, 0.3, 0.0])
    std = np.full(7, 0.25)  # 0.9 - 0.25 = 0.65: samples 3 and 4 -> 2 samples -> 0.01 s
    assert time_uncertainty(mean, std, 3) == 0.01
    assert time_uncertainty(mean, np.zeros(7), 3) == 0.005  # no spread: half a sample


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
