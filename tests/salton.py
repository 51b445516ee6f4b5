"""Test helper: the Westmorland swarm (salton_sea_2020: 16 CI stations, 3 min) replayed with the
published original EqT weights into a new catalog, as several catalog-level tests start from."""
from __future__ import annotations

from pathlib import Path

from obspy import UTCDateTime

from eqt_monitor.catalog.store import Catalog

START = UTCDateTime("2020-10-01T00:00:00").timestamp
END = START + 180.0


def salton_replay(shared: Path, weights: Path, db: Path):
    """Replay the 3 minutes into a new catalog at ``db`` (picks and detections; no events).
    Returns (the data folder, the open catalog, the loaded model)."""
    from eqt_monitor.config import config_from_inventory
    from eqt_monitor.model.load import load_model
    from eqt_monitor.replay import replay

    folder = shared / "data" / "salton_sea_2020"
    source = f"file://{folder}/mseed/*.mseed"
    config = config_from_inventory(folder / "stations.xml", [source])
    model = load_model("original", weights)
    catalog = Catalog(db)
    replay(config, start=START, end=END, predict_fn=model.predict, model_name="original",
           weights_sha256=model.weights_sha256, source=source, catalog=catalog, progress=False)
    return folder, catalog, model
