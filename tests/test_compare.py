"""``compare``: better-than-baseline marks and counts, ties, and the header, through the CLI."""
from __future__ import annotations

import json

import pytest

from eqt_monitor.cli import main
from eqt_monitor.training.metrics import METRIC_NAMES


def _result(model: str, **changes) -> dict:
    base = {name: 0.5 for name in METRIC_NAMES}
    base.update({name: 10 for name in METRIC_NAMES if name.endswith(("_tp", "_fp", "_tn", "_fn"))})
    base.update(model=model, weights_sha256="ab" * 32, tolerance_s=0.5, n_events=20)
    base.update(changes)
    return base


def _write(tmp_path, name, result):
    path = tmp_path / name
    path.write_text(json.dumps(result))
    return path


def test_table_marks_better_values_and_counts_them(tmp_path, capsys):
    base = _write(tmp_path, "base.json", _result("original"))
    # better: higher p_recall, lower s_mae, lower d_fp, higher p_tn; worse: lower det_f1; tie: everything else
    variant = _write(
        tmp_path,
        "v.json",
        _result("gru", p_recall=0.9, s_mae=0.1, d_fp=3, p_tn=12, det_f1=0.2, s_rmse=None),
    )
    out_json = tmp_path / "table.json"
    assert main(["compare", str(base), str(variant), "--baseline", "original", "--dataset", "stead50", "--json", str(out_json)]) == 0
    md = capsys.readouterr().out
    assert "stead50" in md and "tolerance 0.5 s" in md and "(20 earthquake traces)" in md
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md.splitlines() if line.startswith("| ")}
    assert rows["metric"] == ["original (baseline)", "gru"]
    assert rows["p_recall"] == ["0.5000", "**0.9000**"]
    assert rows["s_mae"] == ["0.5000", "**0.1000**"]
    assert rows["d_fp"] == ["10", "**3**"]
    assert rows["p_tn"] == ["10", "**12**"]
    assert rows["det_f1"] == ["0.5000", "0.2000"]
    assert rows["s_rmse"] == ["0.5000", "n/a"]
    assert rows["p_precision"] == ["0.5000", "0.5000"]
    assert rows["better than baseline"] == ["—", "4 of 25"]
    table = json.loads(out_json.read_text())
    gru = table["models"][1]
    assert gru["better_count"] == 4 and set(gru["better_than_baseline"]) == {"p_recall", "s_mae", "d_fp", "p_tn"}
    assert table["dataset"] == "stead50" and table["baseline"] == "original"


def test_a_model_is_never_better_than_itself(tmp_path, capsys):
    a = _write(tmp_path, "a.json", _result("original"))
    b = _write(tmp_path, "b.json", _result("original"))
    assert main(["compare", str(a), str(b), "--baseline", "a"]) == 0
    assert "| better than baseline | — | 0 of 25 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (_result("gru", tolerance_s=0.2), "different tolerances"),
        (_result("gru", n_events=7), "different data sets"),
    ],
)
def test_results_that_cannot_be_compared_are_refused(tmp_path, capsys, second, message):
    a = _write(tmp_path, "a.json", _result("original"))
    b = _write(tmp_path, "b.json", second)
    assert main(["compare", str(a), str(b)]) == 2
    assert message in capsys.readouterr().err


def test_unknown_baseline_and_bad_files_are_one_line_errors(tmp_path, capsys):
    a = _write(tmp_path, "a.json", _result("original"))
    assert main(["compare", str(a), "--baseline", "vanilla"]) == 2
    assert "baseline 'vanilla' is not among the results (original)" in capsys.readouterr().err
    bad = _write(tmp_path, "bad.json", {"model": "x"})
    assert main(["compare", str(a), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json: not an evaluate result" in err and err.count("\n") == 1
