"""Deterministic train/validation/test splits of a STEAD-format set, saved as JSON so every model
in an experiment (and every resumed run) sees the same traces."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from eqt_monitor.errors import UserError

DEFAULT_FRACTIONS = (0.85, 0.05, 0.10)  # EQTransformer's trainer
PARTS = ("train", "valid", "test")


def make_split(names: list[str], fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0) -> dict[str, list[str]]:
    """Shuffle the sorted names with ``seed`` and cut them by ``fractions`` (train, valid, test).

    Every part with a non-zero fraction gets at least one trace when there are enough traces.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise UserError(f"split fractions must be three non-negative numbers summing to 1, not {list(fractions)}")
    order = sorted(names)
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    n_valid = max(int(round(fractions[1] * n)), 1 if fractions[1] and n >= 3 else 0)
    n_test = max(int(round(fractions[2] * n)), 1 if fractions[2] and n >= 3 else 0)
    n_train = n - n_valid - n_test
    return {
        "train": order[:n_train],
        "valid": order[n_train : n_train + n_valid],
        "test": order[n_train + n_valid :],
    }


def save_split(split: dict[str, list[str]], path: str | Path) -> None:
    """Write a split as JSON."""
    Path(path).write_text(json.dumps({k: split[k] for k in PARTS}, indent=1) + "\n", encoding="utf-8")


def load_split(path: str | Path) -> dict[str, list[str]]:
    """Read a split written by :func:`save_split`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read split: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in PARTS):
        raise UserError(f"{path}: a split needs lists 'train', 'valid' and 'test'")
    return {k: [str(n) for n in data[k]] for k in PARTS}


def split_csv(csv_path: str | Path, names: list[str], out: str | Path) -> Path:
    """Write the rows of ``csv_path`` whose ``trace_name`` is in ``names`` (in the CSV's order) to ``out``."""
    wanted = set(names)
    with open(csv_path, newline="", encoding="utf-8") as src, open(out, "w", newline="", encoding="utf-8") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames or ["trace_name"])
        writer.writeheader()
        writer.writerows(row for row in reader if row.get("trace_name") in wanted)
    return Path(out)
