"""Shared fixtures: where the real data lives, and skipping when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$EQT_SHARED`` or ``../shared`` beside the repository."""
    return Path(os.environ.get("EQT_SHARED", ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared real-data folder; skips the test with a reason when it is absent."""
    path = shared_dir()
    if not (path / "README.md").exists():
        pytest.skip(f"real data not found at {path} (set EQT_SHARED)")
    return path


@pytest.fixture(scope="session")
def original_weights(shared: Path) -> Path:
    return shared / "models" / "eqt_original.h5"


@pytest.fixture(scope="session")
def conservative_weights(shared: Path) -> Path:
    return shared / "models" / "eqt_conservative.h5"


CHILE_T0 = "2014-05-01T00:00:00"
CHILE_CHANNELS = [f"CX.{sta}..HH{c}" for sta in ("PB01", "PB02") for c in "ENZ"]


@pytest.fixture(scope="session")
def sds(shared: Path) -> Path:
    """The chile_2014 SDS archive (CX.PB01, CX.PB02, HH[ENZ], 2014-05-01 00:00-12:00)."""
    return shared / "data" / "chile_2014" / "sds"


@pytest.fixture(scope="session")
def archive(sds: Path) -> dict:
    """chile_2014's first 20 minutes per channel, read straight from the day files with ObsPy
    (one merged trace per channel id): the truth that streamed data is compared against."""
    import obspy

    t0 = obspy.UTCDateTime(CHILE_T0)
    out = {}
    for cid in CHILE_CHANNELS:
        net, sta, _, cha = cid.split(".")
        st = obspy.read(str(sds / "2014" / net / sta / f"{cha}.D" / f"{cid}.D.2014.121"),
                        starttime=t0 - 10, endtime=t0 + 1200)
        st.merge()
        assert len(st) == 1
        out[cid] = st[0]
    return out
