"""An experiment: several variants trained and evaluated on one data set, with one split and seed,
ending in the compare table.

Config (YAML)::

    name: ncedc_stead50
    out: results/ncedc_stead50                  # the tables (relative to the config file)
    work: ../work/ncedc_stead50                 # merged data and training runs (default: out)
    seed: 0
    split: [0.7, 0.1, 0.2]
    data:                                       # merged into one STEAD-format set in out/data
      - {stead: {hdf5: ../../shared/data/stead50/waveforms.hdf5, csv: ../../shared/data/stead50/metadata.csv}}
      - {phasenet: {csv: .../waveform.csv, npz_dir: .../waveform_train}}
    train: {epochs: 30, batch_size: 16, patience: 6}
    baseline: original
    models:
      - {label: original, model: original, weights: published}     # evaluated as is
      - {label: original_ft, model: original, init: published, learning_rate: 0.0001}
      - vanilla                                                    # trained from scratch

Every model is scored on the split's test traces only.
"""
from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import yaml

from eqt_monitor.errors import ConfigError
from eqt_monitor.training.compare import compare, to_json, to_markdown
from eqt_monitor.training.evaluate import evaluate
from eqt_monitor.training.phasenet import phasenet_windows
from eqt_monitor.training.splits import load_split, make_split, save_split, split_csv
from eqt_monitor.training.stead import SteadDataset, SteadTrace, write_stead
from eqt_monitor.training.trainer import TrainConfig, train

log = logging.getLogger(__name__)


def load_configs(path: Path) -> list[dict]:
    """The experiments of a config file (one YAML document each), validated."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read experiment config: {exc}".replace("\n", " ")) from None
    if not documents:
        raise ConfigError(f"{path}: no experiment in the file")
    return [_check(path, config) for config in documents]


def _check(path: Path, config) -> dict:
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping")
    for key in ("name", "out", "data", "models"):
        if key not in config:
            raise ConfigError(f"{path}: missing field {key!r}")
    # a plain name is short for {label: NAME, model: NAME} (trained from scratch)
    config["models"] = [{"label": m, "model": m} if isinstance(m, str) else m for m in config["models"]]
    if not all(isinstance(m, dict) for m in config["models"]):
        raise ConfigError(f"{path}: field 'models': each entry is a name or a mapping")
    labels = [m.get("label", m.get("model")) for m in config["models"]]
    if len(set(labels)) != len(labels) or None in labels:
        raise ConfigError(f"{path}: field 'models': every entry needs a 'model' and a unique 'label'")
    if config.get("baseline", labels[0]) not in labels:
        raise ConfigError(f"{path}: field 'baseline' names no model label")
    return config


def _sources(config: dict, base: Path, seed: int) -> Iterator[SteadTrace]:
    for i, entry in enumerate(config["data"]):
        (kind, opts), = entry.items()
        if kind == "stead":
            with SteadDataset(base / opts["hdf5"], base / opts["csv"]) as ds:
                yield from ds
        elif kind == "phasenet":
            yield from phasenet_windows(base / opts["csv"], base / opts["npz_dir"], seed=opts.get("seed", seed))
        else:
            raise ConfigError(f"data[{i}]: unknown source {kind!r} (stead or phasenet)")


def _describe(entry: dict) -> str:
    (kind, opts), = entry.items()
    return f"{kind} {Path(opts.get('hdf5') or opts.get('npz_dir')).parent.name}"


def build_dataset(config: dict, base: Path, out: Path, seed: int) -> tuple[Path, Path]:
    """Merge the config's data sources into ``out/data/waveforms.hdf5`` + ``metadata.csv`` (once)."""
    folder = out / "data"
    h5, csv_path = folder / "waveforms.hdf5", folder / "metadata.csv"
    if not h5.exists():
        folder.mkdir(parents=True, exist_ok=True)
        count = write_stead(h5, csv_path, _sources(config, base, seed))
        log.info("experiment data: %d traces in %s", count, h5)
    return h5, csv_path


def run_experiments(config_path: str | Path) -> list[Path]:
    """Run every experiment in the config file; returns their ``compare.md`` paths."""
    config_path = Path(config_path)
    return [run_experiment(config, config_path) for config in load_configs(config_path)]


def run_experiment(config: dict, config_path: Path) -> Path:
    """Run every model of one experiment and write ``out/compare.md`` and ``out/compare.json``; returns the Markdown path."""
    base = config_path.resolve().parent
    out = base / config["out"]
    work = base / config.get("work", config["out"])  # the merged data and the training runs
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    seed = int(config.get("seed", 0))
    h5, csv_path = build_dataset(config, base, work, seed)
    split_path = out / "split.json"
    if not split_path.exists():
        with SteadDataset(h5, csv_path) as ds:
            save_split(make_split(ds.names, tuple(config.get("split", (0.85, 0.05, 0.10))), seed), split_path)
    split = load_split(split_path)
    test_csv = split_csv(csv_path, split["test"], work / "test.csv")
    defaults = TrainConfig(model="", hdf5=h5, csv=csv_path, out=out, seed=seed, **config.get("train", {}))

    labels, results = [], []
    for entry in config["models"]:
        label = entry.get("label", entry["model"])
        weights = entry.get("weights")
        if weights is None:  # train it
            run_dir = work / label
            run_dir.mkdir(exist_ok=True)
            save_split(split, run_dir / "split.json")
            cfg = replace(
                defaults,
                model=entry["model"],
                out=run_dir,
                init_weights=entry.get("init"),
                **{k: entry[k] for k in ("learning_rate", "epochs", "batch_size", "patience") if k in entry},
            )
            weights = str(train(cfg).model_path)
        result = evaluate(entry["model"], h5, test_csv, weights=None if weights == "published" else weights)
        (out / f"{label}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        labels.append(label)
        results.append(result)

    dataset = f"{config['name']}: the {len(split['test'])} test-split traces of {', '.join(map(_describe, config['data']))}"
    table = compare(labels, results, config.get("baseline", labels[0]), dataset)
    command = "eqt-monitor experiment --config " + shlex.quote(str(config_path))
    markdown = to_markdown(table) + f"\nMade by `{command}` (python {sys.version.split()[0]}).\n"
    (out / "compare.md").write_text(markdown, encoding="utf-8")
    (out / "compare.json").write_text(json.dumps({**to_json(table), "command": command}, indent=2) + "\n", encoding="utf-8")
    return out / "compare.md"
