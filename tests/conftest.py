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
