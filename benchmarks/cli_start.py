"""Start-up time of the commands a new user meets first, each in a fresh process (warm disk cache).

    python benchmarks/cli_start.py [--repeats 5] [--json F]

Target (issue 11): ``eqt-monitor models list`` <= 3 s on 2 cores. Measured side by side with
``eqt-monitor --help`` (the interpreter and argparse alone) and with ``python -c "import keras"``
(what building a model costs before any work), alternating, median of ``--repeats`` samples.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

EXE = str(Path(sys.executable).with_name("eqt-monitor"))
COMMANDS = {
    "eqt-monitor --help": [EXE, "--help"],
    "eqt-monitor models list": [EXE, "models", "list"],
    "python -c 'import keras' (for scale)": [sys.executable, "-c", "import keras"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("cli_start.json"))
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats + 1):  # the first round warms the disk cache and is dropped
        for name, command in COMMANDS.items():
            t = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            samples[name].append(time.perf_counter() - t)
    rows = {name: {"median_s": statistics.median(s[1:]), "min_s": min(s[1:]), "max_s": max(s[1:])}
            for name, s in samples.items()}
    print(f"{'command':<40} {'median s':>9} {'min':>6} {'max':>6}")
    for name, row in rows.items():
        print(f"{name:<40} {row['median_s']:>9.2f} {row['min_s']:>6.2f} {row['max_s']:>6.2f}")
    print(f"load average {os.getloadavg()}")
    args.json.write_text(json.dumps({"machine": machine(), "repeats": args.repeats, "commands": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
