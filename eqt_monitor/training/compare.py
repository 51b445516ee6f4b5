"""The research notes' variant table: every model's 25 metrics against a baseline, "better in N of 25"."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eqt_monitor.errors import UserError
from eqt_monitor.training.metrics import LOWER_IS_BETTER, METRIC_NAMES


@dataclass
class Comparison:
    """Results side by side: ``columns`` labels, ``results`` dicts, ``baseline`` label, and for each
    non-baseline column the set of metrics where it beats the baseline."""

    columns: list[str]
    results: list[dict]
    baseline: str
    better: dict[str, list[str]]
    tolerance_s: float
    dataset: str

    def better_count(self, column: str) -> int:
        """How many of the 25 metrics ``column`` beats the baseline on."""
        return len(self.better[column])


def is_better(metric: str, value, reference) -> bool:
    """Strictly better than ``reference`` (lower for mae/rmse/fp/fn, higher otherwise); ties and n/a are not."""
    if value is None or reference is None:
        return False
    return value < reference if metric in LOWER_IS_BETTER else value > reference


def load_results(paths: list[str | Path]) -> tuple[list[str], list[dict]]:
    """Read ``evaluate`` JSON files; a column is labelled by its model name, or file stem when names repeat."""
    results = []
    for path in paths:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read evaluate results: {exc}".replace("\n", " ")) from None
        missing = [k for k in (*METRIC_NAMES, "model", "tolerance_s") if k not in data]
        if missing:
            raise UserError(f"{path}: not an evaluate result (no field {missing[0]!r})")
        results.append((path, data))
    models = [d["model"] for _, d in results]
    labels = [d["model"] if models.count(d["model"]) == 1 else p.stem for p, d in results]
    if len(set(labels)) != len(labels):
        raise UserError(f"two result files share the label {labels[0]!r}: rename one")
    return labels, [d for _, d in results]


def compare(labels: list[str], results: list[dict], baseline: str, dataset: str = "") -> Comparison:
    """Mark, for every non-baseline column, the metrics better than the baseline's."""
    if baseline not in labels:
        raise UserError(f"baseline {baseline!r} is not among the results ({', '.join(labels)})")
    tolerances = {r["tolerance_s"] for r in results}
    if len(tolerances) != 1:
        raise UserError(f"results were scored with different tolerances {sorted(tolerances)}; re-run evaluate with one")
    events = {r.get("n_events") for r in results}
    if len(events) != 1:
        raise UserError(f"results come from different data sets (n_events {sorted(events, key=str)})")
    ref = results[labels.index(baseline)]
    better = {
        label: [m for m in METRIC_NAMES if is_better(m, r[m], ref[m])]
        for label, r in zip(labels, results)
        if label != baseline
    }
    return Comparison(labels, results, baseline, better, tolerances.pop(), dataset)


def _cell(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def to_markdown(c: Comparison) -> str:
    """The table as Markdown: a metric per row, a model per column, better-than-baseline values in bold."""
    n_events = c.results[0].get("n_events")
    lines = [
        f"# Variants against `{c.baseline}`",
        "",
        f"Data set: {c.dataset or 'not recorded'} ({n_events} earthquake traces); pick tolerance {c.tolerance_s} s. "
        "**Bold**: better than the baseline (higher precision/recall/f1/tp/tn, lower mae/rmse/fp/fn); equal values are ties.",
        "",
        "| metric | " + " | ".join(f"{label} (baseline)" if label == c.baseline else label for label in c.columns) + " |",
        "|---|" + "---:|" * len(c.columns),
    ]
    for metric in METRIC_NAMES:
        cells = []
        for label, result in zip(c.columns, c.results):
            text = _cell(result[metric])
            cells.append(f"**{text}**" if label != c.baseline and metric in c.better[label] else text)
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    counts = [("—" if label == c.baseline else f"{c.better_count(label)} of 25") for label in c.columns]
    lines.append("| better than baseline | " + " | ".join(counts) + " |")
    return "\n".join(lines) + "\n"


def to_json(c: Comparison) -> dict:
    """The table as a JSON-ready dict."""
    return {
        "dataset": c.dataset,
        "tolerance_s": c.tolerance_s,
        "baseline": c.baseline,
        "metrics": list(METRIC_NAMES),
        "models": [
            {
                "label": label,
                "model": result["model"],
                "weights_sha256": result.get("weights_sha256"),
                "values": {m: result[m] for m in METRIC_NAMES},
                "better_than_baseline": None if label == c.baseline else c.better[label],
                "better_count": None if label == c.baseline else c.better_count(label),
            }
            for label, result in zip(c.columns, c.results)
        ],
    }


def seed_spread(results: list[dict]) -> dict[str, dict]:
    """Per metric over a model's seed runs: ``mean``, ``sd`` (sample, ddof 1), ``min``, ``max``, ``n``
    (runs where the metric is defined); ``None`` values are left out."""
    import statistics

    out = {}
    for metric in METRIC_NAMES:
        values = [r[metric] for r in results if r[metric] is not None]
        out[metric] = {
            "mean": statistics.fmean(values) if values else None,
            "sd": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values, default=None),
            "max": max(values, default=None),
            "n": len(values),
        }
    return out


def spread_markdown(spreads: dict[str, dict]) -> str:
    """The seed spreads as a Markdown table (``mean ± sd (min–max)``), or ``""`` without any."""
    if not spreads:
        return ""
    labels = list(spreads)
    runs = ", ".join(f"{label}: {max(s['n'] for s in spreads[label].values())} seeds" for label in labels)
    lines = [
        "",
        f"## Spread over seeds ({runs})",
        "",
        "Each cell: mean ± sd (min–max) over the seeds; the table above uses the mean.",
        "",
        "| metric | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for metric in METRIC_NAMES:
        cells = []
        for label in labels:
            s = spreads[label][metric]
            cells.append("n/a" if s["mean"] is None else f"{s['mean']:.3f} ± {s['sd'] or 0:.3f} ({s['min']:.3g}–{s['max']:.3g})")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


PLOTTED = ("det_precision", "det_recall", "det_f1", "p_precision", "p_recall", "p_f1", "s_precision", "s_recall", "s_f1")
PLOTTED_ERRORS = ("p_mae", "p_rmse", "s_mae", "s_rmse")


def plot_comparison(c: Comparison, spreads: dict[str, dict], path: str | Path) -> Path:
    """A PNG of the models' scores (precision/recall/F1 and pick errors in seconds) as grouped bars,
    with the seed sd as error bars where there are several seeds; the counts stay in the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.9 * len(c.columns) + 6), 8))
    width = 0.8 / len(c.columns)
    for ax, metrics, ylabel in ((axes[0], PLOTTED, "score"), (axes[1], PLOTTED_ERRORS, "seconds")):
        x = np.arange(len(metrics))
        for i, (label, result) in enumerate(zip(c.columns, c.results)):
            values = [np.nan if result[m] is None else result[m] for m in metrics]
            errors = [(spreads.get(label, {}).get(m, {}).get("sd") or 0.0) for m in metrics]
            name = f"{label} ({'baseline' if label == c.baseline else f'{c.better_count(label)}/25'})"
            ax.bar(x + (i - (len(c.columns) - 1) / 2) * width, values, width, yerr=errors, label=name, capsize=2)
        ax.set_xticks(x, metrics, rotation=20)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title(f"{c.dataset} (tolerance {c.tolerance_s} s)", fontsize="small")
    axes[0].legend(fontsize="x-small", ncol=3, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
