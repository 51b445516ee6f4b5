"""Shared fixtures: where the real data lives, and skipping when it is absent."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$EQT_SHARED`` or ``../shared`` beside the repository."""
    return Path(os.environ.get("EQT_SHARED", ROOT.parent / "shared")).resolve()


# The suite leaves the user's machine alone: before anything imports Keras or Matplotlib (which
# create ~/.keras and ~/.config/matplotlib), their folders and ours point into one temporary
# folder for the session; each test then gets a cache of its own (``own_cache`` below).
# ``pytest_sessionfinish`` fails the run if anything under $HOME changed all the same.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="eqt-monitor-tests-"))
os.environ.update({
    "EQT_SHARED": str(shared_dir()),  # children and cwd-relative defaults see the same data
    "KERAS_HOME": str(_SESSION_DIR / "keras"),
    "MPLCONFIGDIR": str(_SESSION_DIR / "matplotlib"),
    "XDG_CACHE_HOME": str(_SESSION_DIR / "xdg-cache"),
    "XDG_CONFIG_HOME": str(_SESSION_DIR / "xdg-config"),
    "XDG_STATE_HOME": str(_SESSION_DIR / "xdg-state"),
    "EQT_MONITOR_CACHE": str(_SESSION_DIR / "eqt-monitor-cache"),
})
HOME = Path.home()
# Where the product or its libraries would write under $HOME if the tests did not redirect them
# (watched file by file), and the new top-level entries of $HOME (watched by name only, so a
# clone under $HOME, its .venv and pytest's own caches do not count).
WATCHED_IN_HOME = (".cache/eqt-monitor", ".keras", ".config/matplotlib", ".cache/matplotlib", ".obspy")


def home_snapshot(home: Path = HOME) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of every file and folder under the watched folders of
    ``home``, and ``name -> (0, 0)`` for each top-level entry of ``home``."""
    snapshot: dict[str, tuple[int, int]] = {f"{entry}/": (0, 0) for entry in os.listdir(home)}
    for watched in WATCHED_IN_HOME:
        root = home / watched
        if not root.exists():
            continue
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                snapshot[os.path.relpath(path, home)] = (0 if name in dirs else st.st_size, st.st_mtime_ns)
    return snapshot


def home_changes(before: dict, after: dict) -> list[str]:
    """What a run added, removed or modified under $HOME, as ``+path``/``-path``/``~path``."""
    return ([f"+{p}" for p in sorted(after.keys() - before.keys())]
            + [f"-{p}" for p in sorted(before.keys() - after.keys())]
            + [f"~{p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]
               and not p.endswith("/") and not os.path.isdir(HOME / p)])


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._home_before = home_snapshot()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
    changes = home_changes(session.config._home_before, home_snapshot())
    if changes:
        shown = ", ".join(changes[:10]) + (f" … ({len(changes)} in all)" if len(changes) > 10 else "")
        print(f"\nFAILED: the test run changed files under {HOME}: {shown}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own weights/trained-model cache (``$EQT_MONITOR_CACHE``)."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EQT_MONITOR_CACHE", str(cache))
    return cache


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


def _pg_server():
    """A started real PostgreSQL server (``tests/pgserver.py``), removed at the end; skips when
    PostgreSQL's binaries are not installed (Debian's ``postgresql`` package; ``.ci/run`` installs it)."""
    from pgserver import PostgresServer, bin_dir

    found = bin_dir()
    if found is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    server = PostgresServer(found)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def pg_server():
    """The session's PostgreSQL server (each test makes its own database: ``new_database()``)."""
    yield from _pg_server()


@pytest.fixture
def own_pg_server():
    """A PostgreSQL server of the test's own, which it may stop and start again."""
    yield from _pg_server()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_target(request: pytest.FixtureRequest, tmp_path: Path):
    """Where a test's catalog lives: an SQLite file, then a fresh database on the session's server."""
    if request.param == "sqlite":
        return tmp_path / "c.sqlite"
    return request.getfixturevalue("pg_server").new_database()
