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


def make_station_split(
    stations: dict[str, str],
    sources: dict[str, str],
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    test_sources: tuple[str, ...] = (),
) -> dict[str, list[str]]:
    """Split trace names so that no station is in two parts, stratified by source.

    ``stations`` and ``sources`` map every name to its station and source. A station's part is
    decided by the source holding most of its traces (ties: the first by name): per source, its
    sorted stations are shuffled with ``seed``; each part with a non-zero fraction takes one
    station first (test, valid, train, while stations last), then every further station goes to
    the part furthest below its share of that source's traces. Sources in ``test_sources`` go
    wholly to test (a cross-domain split); the others are then split train/valid only, in the
    proportion of the first two fractions. Traces without a station are their own group.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise UserError(f"split fractions must be three non-negative numbers summing to 1, not {list(fractions)}")
    unknown = sorted(set(test_sources) - set(sources.values()))
    if unknown:
        raise UserError(f"split test_sources: no source named {unknown[0]!r} (sources: {', '.join(sorted(set(sources.values())))})")
    groups: dict[str, list[str]] = {}
    for name in sorted(stations):
        groups.setdefault(stations[name] or f"trace:{name}", []).append(name)
    home: dict[str, list[str]] = {}  # source -> its stations
    for group, names in sorted(groups.items()):
        counts = [sources[n] for n in names]
        home.setdefault(max(sorted(set(counts)), key=counts.count), []).append(group)
    part_of: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for source in sorted(home):
        order = list(home[source])
        rng.shuffle(order)
        if source in test_sources:
            part_of.update(dict.fromkeys(order, "test"))
            continue
        share = dict(zip(PARTS, fractions if not test_sources else (fractions[0], fractions[1], 0.0)))
        total = sum(share.values())
        size = {part: 0 for part in PARTS}
        n_traces = sum(len(groups[g]) for g in order)
        seeded = [p for p in ("test", "valid", "train") if share[p] > 0]
        for i, group in enumerate(order):
            if i < len(seeded):
                part = seeded[i]
            else:
                part = max(PARTS, key=lambda p: share[p] / total * n_traces - size[p])
            part_of[group] = part
            size[part] += len(groups[group])
    split = {part: [] for part in PARTS}
    for group, names in groups.items():
        split[part_of[group]].extend(names)
    return {part: sorted(names) for part, names in split.items()}
