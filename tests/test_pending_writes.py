"""PendingWrites against a real SQLite catalog whose file cannot grow (SQLite's ``max_page_count``:
the same "database or disk is full" error a full disk gives), on an injected clock."""
from __future__ import annotations

from eqt_monitor.catalog.store import Catalog
from eqt_monitor.driver import CatalogWriter
from eqt_monitor.live.writes import Batch, PendingWrites, Storage
from eqt_monitor.records import Pick, StationKey

STATION = StationKey("CX", "PB01", "", "HH")


def test_retries_stay_capped_after_more_failures_than_a_float_power_of_two_holds(tmp_path):
    """2 ** 1024 does not fit a float: the 1025th failed write (about 8.5 h of a full disk at 30 s)
    must still schedule its retry within ``backoff_max``, and the held picks go in once space is back."""
    now = [0.0]
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        pending = PendingWrites(CatalogWriter(catalog, model="m", weights_sha256="0" * 64),
                                Storage(catalog.path, clock=lambda: now[0]), backoff_max=30.0,
                                clock=lambda: now[0])
        pages = catalog._db.execute("PRAGMA page_count").fetchone()[0]
        catalog._db.execute(f"PRAGMA max_page_count={pages}")  # the file is "full" from here on
        pending.add(Batch(picks=[Pick(STATION, "P", 1.4e9 + i, 0.9) for i in range(300)]))
        for _ in range(1100):
            now[0] += 30.0
            assert pending.flush() is None
        assert pending.held == 300
        catalog._db.execute("PRAGMA max_page_count=1073741823")
        now[0] += 29.0
        assert pending.flush() is None, "still waiting for the retry"
        now[0] += 1.0
        assert pending.flush() is not None and pending.held == 0
        assert len(catalog.picks()) == 300
