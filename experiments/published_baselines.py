"""The published EqT weights (original, conservative, their ensemble, and original with thresholds
chosen on the validation split) on seed_all's data: each source's test split, the whole test split,
and every source whole (cross-domain: the published models never trained on these sets, except
that stead50's traces come from STEAD, EqT's training set). Inference only; minutes on CPU.

    PYTHONPATH=. python experiments/published_baselines.py [--config experiments/seed_all.yaml]

Writes ``<out>/published_baselines.json`` and ``<out>/split.json`` (the split the full run reuses).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from eqt_monitor.model.backend import configure
from eqt_monitor.training.evaluate import ensemble, predict_dataset, score_predictions, select_thresholds
from eqt_monitor.training.experiment import _split, build_dataset, load_configs
from eqt_monitor.training.splits import load_split, save_split
from eqt_monitor.training.stead import SteadDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("seed_all.yaml"))
    args = parser.parse_args()
    configure(None)
    from eqt_monitor.model.load import load_model

    (config,) = load_configs(args.config)
    base = args.config.resolve().parent
    out, work = base / config["out"], base / config["work"]
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    seed = int(config.get("seed", 0))
    h5, csv_path = build_dataset(config, base, work, seed)
    if not (out / "split.json").exists():
        save_split(_split(config, h5, csv_path, seed), out / "split.json")
    split = load_split(out / "split.json")
    started = time.monotonic()
    with SteadDataset(h5, csv_path) as ds:
        sources = dict(ds.source)
        shared = Path(os.environ.get("EQT_SHARED", base.parent.parent / "shared"))
        models = {name: load_model(name, shared / "models" / f"eqt_{name}.h5") for name in ("original", "conservative")}
        predicts = {name: m.predict for name, m in models.items()}
        predicts["ensemble(original+conservative)"] = ensemble([models["original"].predict, models["conservative"].predict])
        scored = {label: {s.name: s for s in predict_dataset(fn, ds, progress=False)} for label, fn in predicts.items()}
    subsets = {"test (all sources)": split["test"]}
    for source in sorted(set(sources.values())):
        subsets[f"test: {source}"] = [n for n in split["test"] if sources[n] == source]
    for source in sorted(set(sources.values())):
        subsets[f"whole: {source}"] = sorted(n for n in sources if sources[n] == source)
    valid = [s for s in scored["original"].values() if s.name in set(split["valid"])]
    tuned = select_thresholds(valid)
    rows = []
    for label, by_name in scored.items():
        variants = [(label, {})] + ([(f"{label}, thresholds tuned on valid", tuned)] if label == "original" else [])
        for row_label, thresholds in variants:
            for subset, names in subsets.items():
                result = score_predictions([by_name[n] for n in names if n in by_name], **thresholds)
                rows.append({"model": row_label, "subset": subset, "n_traces": len(names), "thresholds": thresholds or "defaults 0.3/0.1/0.1", **result})
    payload = {
        "data": f"{config['name']}: {len(sources)} traces ({h5})",
        "weights_sha256": {name: m.weights_sha256 for name, m in models.items()},
        "tuned_thresholds_on_valid": tuned,
        "tolerance_s": 0.5,
        "wall_s": round(time.monotonic() - started, 1),
        "command": "PYTHONPATH=. python experiments/published_baselines.py",
        "results": rows,
    }
    (out / "published_baselines.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    for row in rows:
        print(f"{row['model'][:42]:42} {row['subset'][:30]:30} n={row['n_traces']:3d} ev={row['n_events']:3d} "
              f"P f1 {row['p_f1'] if row['p_f1'] is None else round(row['p_f1'], 3)} S f1 {row['s_f1'] if row['s_f1'] is None else round(row['s_f1'], 3)} "
              f"d_tn {row['d_tn']} d_fp {row['d_fp']}")


if __name__ == "__main__":
    main()
