"""A real FDSN dataselect server for tests: ``portable-fdsnws-dataselect`` on 127.0.0.1 over an
index built by the ``mseedindex`` wheel.

mseedindex 3.0.8 writes the ``latest`` entry of each row's ``timeindex`` with byte offset 1;
the server uses that entry's offset as the end of the byte range for requests ending after
the row's last hourly entry, so such trimmed requests come back empty or cut short.
``fix_latest_offsets`` sets it to the row's end (offset + bytes). This is a test set-up
workaround for the indexer, not something the product does.
"""
from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


def tool(name: str) -> str:
    """Path of a console script installed beside this Python (or on PATH); skips when absent."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -e .[test])")
    return found


def build_index(files: Sequence[Path], db: Path, fix: bool = True) -> None:
    """Index miniSEED ``files`` into the SQLite ``db`` with mseedindex (and fix its latest offsets)."""
    if not files:
        raise ValueError("no miniSEED files to index")
    subprocess.run([tool("mseedindex"), "-sqlite", str(db), *map(str, files)], check=True, capture_output=True)
    if fix:
        fix_latest_offsets(db)


def fix_latest_offsets(db: Path) -> int:
    """Point each row's ``latest=>1`` timeindex entry at the row's end; returns the rows changed."""
    with sqlite3.connect(db) as con:
        changed = con.execute(
            "UPDATE tsindex SET timeindex = replace(timeindex, 'latest=>1', 'latest=>' || (byteoffset + bytes)) "
            "WHERE timeindex LIKE '%latest=>1'"
        ).rowcount
    return changed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dataselect_server(db: Path, workdir: Path) -> Iterator[str]:
    """Run the server over index ``db``; yields its ``host:port``."""
    port = free_port()
    config = workdir / "dataselect.ini"
    config.write_text(
        f"[index_db]\npath = {db}\ntable = tsindex\n"
        f"[server]\ninterface = 127.0.0.1\nport = {port}\n"
        f"[logging]\npath = {workdir / 'dataselect.log'}\nlevel = WARNING\n"
    )
    proc = subprocess.Popen([tool("portable-fdsnws-dataselect"), str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dataselect server did not start: {proc.stderr.read().decode()[-500:]}")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()
