"""An experiment: several variants trained and evaluated on one data set, with one split and seed,
ending in the compare table.

Config (YAML)::

    name: ncedc_stead50
    out: results/ncedc_stead50                  # the tables (relative to the config file)
    work: ../work/ncedc_stead50                 # merged data and training runs (default: out)
    seed: 0
    split: [0.7, 0.1, 0.2]                      # by trace; or by station, stratified by source:
    # split: {by: station, fractions: [0.7, 0.1, 0.2], test_sources: [obs]}   (test_sources: cross-domain)
    data:                                       # merged into one STEAD-format set in work/data
      - {stead: {hdf5: ../../shared/data/stead50/waveforms.hdf5, csv: ../../shared/data/stead50/metadata.csv}}
      - {phasenet: {csv: .../waveform.csv, npz_dir: .../waveform_train, source: ncedc}}   # its optional (P only)
      - {npy_noise: {dir: .../aug_noise, source: obs}}
      - {continuous_noise: {files: [".../sds/2014/CX/*/HH?.D/*"], max_per_station: 30, source: chile}}
    # every source takes `source:` (its name in the split; default: its folder) and `max_traces:`
    train: {epochs: 30, batch_size: 16, patience: 6}
    baseline: original
    models:
      - {label: original, model: original, weights: published}     # evaluated as is
      - {label: original_ft, model: original, init: published, learning_rate: 0.0001}
      - {label: gru, model: gru, seeds: [0, 1, 2]}                 # trained once per seed
      - vanilla                                                    # trained from scratch
    spread: {seeds: [1, 2], best: 2, models: [original]}   # extra seeds for these and the best 2 trained

Every model is scored on the split's test traces only; a model whose result JSON records the same
run is not run again (resume). A model with several seeds enters the table with its seed mean;
the spread (mean ± sd, min–max) follows the table, and ``metrics.png`` plots it.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import yaml

from eqt_monitor.errors import ConfigError
from eqt_monitor.training.compare import compare, plot_comparison, seed_spread, spread_markdown, to_json, to_markdown
from eqt_monitor.training.evaluate import evaluate
from eqt_monitor.training.metrics import METRIC_NAMES
from eqt_monitor.training.noise import continuous_noise, npy_noise
from eqt_monitor.training.phasenet import phasenet_windows
from eqt_monitor.training.splits import PARTS, load_split, make_split, make_station_split, save_split, split_csv
from eqt_monitor.training.stead import NOISE, SteadDataset, SteadTrace, write_stead
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


SOURCE_KINDS = ("stead", "phasenet", "npy_noise", "continuous_noise")


def _source_name(kind: str, opts: dict) -> str:
    """A data entry's ``source`` label, default the folder its files are in."""
    if opts.get("source"):
        return str(opts["source"])
    if kind == "continuous_noise":
        raise ConfigError("data: a continuous_noise entry needs a 'source' name")
    return Path(opts.get("hdf5") or opts.get("npz_dir") or opts.get("dir")).parent.name


def _entry_traces(kind: str, opts: dict, base: Path, seed: int) -> Iterator[SteadTrace]:
    source = _source_name(kind, opts)
    if kind == "stead":
        with SteadDataset(base / opts["hdf5"], base / opts["csv"]) as ds:
            for trace in ds:
                yield replace(trace, source=source)
    elif kind == "phasenet":
        yield from phasenet_windows(base / opts["csv"], base / opts["npz_dir"], seed=opts.get("seed", seed), source=source)
    elif kind == "npy_noise":
        yield from npy_noise(base / opts["dir"], source=source)
    else:
        files = [str(base / f) for f in opts["files"]]
        yield from continuous_noise(
            files, source=source, max_per_station=int(opts.get("max_per_station", 30)), start=opts.get("start"), end=opts.get("end")
        )


def _sources(config: dict, base: Path, seed: int) -> Iterator[SteadTrace]:
    for i, entry in enumerate(config["data"]):
        (kind, opts), = entry.items()
        if kind not in SOURCE_KINDS:
            raise ConfigError(f"data[{i}]: unknown source {kind!r} ({', '.join(SOURCE_KINDS)})")
        limit = opts.get("max_traces")
        traces = _entry_traces(kind, opts, base, seed)
        yield from (traces if limit is None else (t for _, t in zip(range(int(limit)), traces)))


def _describe(entry: dict) -> str:
    (kind, opts), = entry.items()
    return f"{kind} {_source_name(kind, opts)}"


def build_dataset(config: dict, base: Path, out: Path, seed: int) -> tuple[Path, Path]:
    """Merge the config's data sources into ``out/data/waveforms.hdf5`` + ``metadata.csv`` (once)."""
    folder = out / "data"
    h5, csv_path = folder / "waveforms.hdf5", folder / "metadata.csv"
    if not h5.exists():  # written under temporary names first: an interrupted build is redone
        folder.mkdir(parents=True, exist_ok=True)
        tmp_h5, tmp_csv = folder / "waveforms.hdf5.part", folder / "metadata.csv.part"
        count = write_stead(tmp_h5, tmp_csv, _sources(config, base, seed))
        tmp_csv.replace(csv_path)
        tmp_h5.replace(h5)
        log.info("experiment data: %d traces in %s", count, h5)
    return h5, csv_path


def run_experiments(config_path: str | Path) -> list[Path]:
    """Run every experiment in the config file; returns their ``compare.md`` paths."""
    config_path = Path(config_path)
    return [run_experiment(config, config_path) for config in load_configs(config_path)]


def _split(config: dict, h5: Path, csv_path: Path, seed: int) -> dict[str, list[str]]:
    """The experiment's split: by trace (``split: [f, f, f]``) or by station and source (a mapping)."""
    spec = config.get("split", (0.85, 0.05, 0.10))
    with SteadDataset(h5, csv_path) as ds:
        if not isinstance(spec, dict):
            return make_split(ds.names, tuple(spec), seed)
        if spec.get("by", "station") != "station":
            raise ConfigError(f"split: 'by' must be 'station', not {spec.get('by')!r}")
        split = make_station_split(
            ds.station, ds.source, tuple(spec.get("fractions", (0.85, 0.05, 0.10))), seed, tuple(spec.get("test_sources", ()))
        )
        noise = {n for n in ds.names if ds.read(n).category == NOISE}
    for part in PARTS:
        if split[part] and not noise & set(split[part]):
            log.warning("split: no noise traces in the %s part (d_tn and d_fp will say nothing there)", part)
    return split


def _runs(entry: dict, seed: int) -> list[tuple[str, int]]:
    """``(run label, seed)`` for each seed of a model entry; the experiment's seed keeps the plain label."""
    if entry.get("weights") is not None:
        return [(entry.get("label", entry["model"]), seed)]
    label = entry.get("label", entry["model"])
    return [(label if s == seed else f"{label}_seed{s}", int(s)) for s in entry.get("seeds", [seed])]


def _run_model(entry: dict, run: str, run_seed: int, ctx: dict) -> dict:
    """Train (unless published) and evaluate one run; a result JSON recording the same run is reused."""
    record = {**{k: v for k, v in entry.items() if k != "seeds"}, "seed": run_seed, "train": ctx["train"]}
    result_path = ctx["out"] / f"{run}.json"
    if result_path.exists():
        done = json.loads(result_path.read_text(encoding="utf-8"))
        if done.get("run") == record:
            log.info("%s: finished in an earlier run (%s); skipped", run, result_path)
            return done
    t_wall = time.perf_counter()
    epochs = 0
    weights = entry.get("weights")
    if weights is None:  # train it
        run_dir = ctx["work"] / run
        run_dir.mkdir(exist_ok=True)
        save_split(ctx["split"], run_dir / "split.json")
        cfg = replace(
            ctx["defaults"],
            model=entry["model"],
            out=run_dir,
            seed=run_seed,
            init_weights=entry.get("init"),
            **{k: entry[k] for k in ("learning_rate", "epochs", "batch_size", "patience") if k in entry},
        )
        trained = train(cfg)
        weights, epochs = str(trained.model_path), trained.epochs_run
    result = evaluate(entry["model"], ctx["h5"], ctx["test_csv"], weights=None if weights == "published" else weights)
    result["run"] = record
    # how this result was made: a run that spans sittings still shows each model's cost
    result["made"] = {"wall_s_this_sitting": round(time.perf_counter() - t_wall, 1), "epochs": epochs, "cores": os.cpu_count(),
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    result_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _mean(results: list[dict]) -> dict:
    """One table column from a model's seed runs: every metric's mean (``None`` when any run has none)."""
    out = dict(results[0])
    for metric in METRIC_NAMES:
        values = [r[metric] for r in results]
        out[metric] = None if None in values else (values[0] if len(values) == 1 else sum(values) / len(values))
    return out


def run_experiment(config: dict, config_path: Path) -> Path:
    """Run every model of one experiment and write ``out/compare.md``, ``out/compare.json`` and
    ``out/metrics.png``; returns the Markdown path."""
    base = config_path.resolve().parent
    out = base / config["out"]
    work = base / config.get("work", config["out"])  # the merged data and the training runs
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    seed = int(config.get("seed", 0))
    h5, csv_path = build_dataset(config, base, work, seed)
    split_path = out / "split.json"
    if not split_path.exists():
        save_split(_split(config, h5, csv_path, seed), split_path)
    split = load_split(split_path)
    ctx = {
        "out": out,
        "work": work,
        "split": split,
        "h5": h5,
        "test_csv": split_csv(csv_path, split["test"], work / "test.csv"),
        "train": config.get("train", {}),
        "defaults": TrainConfig(model="", hdf5=h5, csv=csv_path, out=out, seed=seed, **config.get("train", {})),
    }
    entries = {e.get("label", e["model"]): e for e in config["models"]}
    runs: dict[str, list[dict]] = {label: [_run_model(e, run, s, ctx) for run, s in _runs(e, seed)] for label, e in entries.items()}
    baseline = config.get("baseline", next(iter(entries)))

    def table():
        return compare(list(runs), [_mean(r) for r in runs.values()], baseline, dataset)

    dataset = f"{config['name']}: the {len(split['test'])} test-split traces of {', '.join(map(_describe, config['data']))}"
    spread = config.get("spread")
    if spread:  # more seeds for the named models and the best trained ones
        first = table()
        trained = [lb for lb in runs if entries[lb].get("weights") is None and lb != baseline]
        best = sorted(trained, key=lambda lb: -first.better_count(lb))[: int(spread.get("best", 2))]
        for label in dict.fromkeys([*spread.get("models", []), *best]):
            if label not in entries or entries[label].get("weights") is not None:
                raise ConfigError(f"{config_path}: spread: {label!r} is not a trained model of the experiment")
            seeds = sorted({seed, *(int(x) for x in entries[label].get("seeds", [])), *(int(x) for x in spread.get("seeds", []))})
            entry = {**entries[label], "seeds": seeds}
            runs[label] = [_run_model(entry, run, s, ctx) for run, s in _runs(entry, seed)]
    comparison = table()
    spreads = {label: seed_spread(r) for label, r in runs.items() if len(r) > 1}
    command = "eqt-monitor experiment --config " + shlex.quote(str(config_path))
    markdown = to_markdown(comparison) + spread_markdown(spreads) + f"\nMade by `{command}` (python {sys.version.split()[0]}).\n"
    (out / "compare.md").write_text(markdown, encoding="utf-8")
    payload = {**to_json(comparison), "seed_spread": spreads, "command": command}
    (out / "compare.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    plot_comparison(comparison, spreads, out / "metrics.png")
    return out / "compare.md"
