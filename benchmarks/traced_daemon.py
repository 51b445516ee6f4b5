"""``eqt-monitor`` with tracemalloc on, for ``soak.py``: each SIGUSR2 writes a snapshot.

    python benchmarks/traced_daemon.py SNAPSHOT_DIR run --config stations.yaml ...

Snapshot ``k`` goes to ``SNAPSHOT_DIR/snapshot{k}.pickle`` (``tracemalloc.Snapshot.load``), with
``snapshot{k}.json`` beside it (tracemalloc's own memory, so RSS can be read without it) written last.
"""
from __future__ import annotations

import json
import signal
import sys
import tracemalloc
from pathlib import Path


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(1)
    taken = 0

    def dump(*_: object) -> None:
        nonlocal taken
        taken += 1
        tracemalloc.take_snapshot().dump(str(out / f"snapshot{taken}.pickle"))
        (out / f"snapshot{taken}.json").write_text(json.dumps({"tracemalloc_mb": tracemalloc.get_tracemalloc_memory() / 2**20}))

    signal.signal(signal.SIGUSR2, dump)
    from eqt_monitor.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
