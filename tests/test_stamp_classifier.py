"""Repeated-run comparisons of stamp-classifier variants (rbda.results.stamp_classifier)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rbda.cli import main
from rbda.results.stamp_classifier import published, welch_from_summary


def test_twoalert_welch_from_its_printed_summaries():
    """RELATED.md B.5: M0 vs M1 on validation accuracy, printed p = 1.668e-5; recomputed about 8e-6."""
    val = published()["tests"]["validation_accuracy"]
    p = welch_from_summary(*val["M0"], *val["M1"], alternative="less")
    assert 1e-6 < p < 1e-4 and p == pytest.approx(8.07e-6, rel=0.01)
    # the same test on the *test* summaries (M1 0.937 ± 0.003 > M2 0.932 ± 0.006): not significant
    assert welch_from_summary(0.932, 0.006, 5, 0.937, 0.003, 5) == pytest.approx(0.0738, abs=0.001)
    # EarlySN T1 vs T2 accuracy (86.52 ± 0.24 vs 87.68 ± 0.87), one-sided
    assert welch_from_summary(86.52, 0.24, 5, 87.68, 0.87, 5) == pytest.approx(0.019, abs=0.001)


def test_published_figures_are_labelled_real_alerce_only():
    pub = published()
    assert "real ALeRCE set only" in pub["note"]
    accuracies = [row["accuracy"][0] for row in pub["rows"]]
    assert accuracies == [0.8652, 0.8768, 0.8832, 0.923]


def fake_run(path, seed, accuracy, bacc, sn, confusion=None):
    """A run JSON as `rbda train --task multiclass` writes it (only the fields the summary reads)."""
    per_class = {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "f2": 0.5} for c in ("AGN", "VS", "asteroid", "bogus")}
    per_class["SN"] = dict(zip(("precision", "recall", "f1", "f2"), sn))
    record = {"source": "ztf", "seed": seed, "evaluations": [
        {"survey": "ztf", "role": "source", "part": "test", "bacc": bacc,
         "multiclass": {"accuracy": accuracy, "balanced_accuracy": bacc, "per_class": per_class,
                        "classes": ["AGN", "SN", "VS", "asteroid", "bogus"],
                        "confusion": confusion if confusion is not None else np.eye(5, dtype=int).tolist()}}]}
    path.write_text(json.dumps(record))
    return path


def test_summary_and_one_sided_holm_tests_on_test_metrics(tmp_path):
    acc = {"a": [0.80, 0.81, 0.82], "b": [0.85, 0.86, 0.84], "c": [0.85, 0.87, 0.86]}
    args = ["stamp-classifier", "--survey", "ztf", "--out-dir", str(tmp_path / "out")]
    for v in acc:
        args += ["--variant", v]
        for k, value in enumerate(acc[v]):
            precision = None if (v == "a" and k == 0) else 0.9  # SN never predicted in one run
            run = fake_run(tmp_path / f"{v}{k}.json", k, value, value - 0.01, (precision, 0.7, 0.8, 0.75))
            args += ["--run", f"{v}={run}"]
    assert main(args) == 0
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    row = summary[(summary.variant == "b") & (summary.metric == "accuracy")].iloc[0]
    assert row["mean"] == pytest.approx(0.85) and row["std"] == pytest.approx(0.01) and row["n"] == 3
    sn = summary[(summary.variant == "a") & (summary.metric == "SN precision")].iloc[0]
    assert sn["n"] == 2 and sn["n_undefined"] == 1
    tests = pd.read_csv(tmp_path / "out" / "tests.csv")
    accuracy = tests[tests.metric == "accuracy"].set_index("hypothesis")
    assert list(accuracy.index) == ["b > a", "c > a", "c > b"]
    from scipy import stats as st

    p = st.ttest_ind(acc["a"], acc["b"], equal_var=False, alternative="less").pvalue
    assert accuracy.at["b > a", "p"] == pytest.approx(p)
    raw = accuracy["p"].to_numpy()
    order = np.argsort(raw)
    expected = np.maximum.accumulate(np.minimum(1, (3 - np.arange(3)) * raw[order]))
    np.testing.assert_allclose(accuracy["p_holm"].to_numpy()[order], expected)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "real ALeRCE set only" in report and "0.8500 ± 0.0100 (n=3)" in report
    assert (tmp_path / "out" / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_confusion_is_summed_over_runs_then_row_normalised(tmp_path):
    from rbda.learn.metrics import row_normalised
    from rbda.results.stamp_classifier import summed_confusion

    one, two = np.eye(5, dtype=int) * 2, np.eye(5, dtype=int)
    two[1] = [1, 0, 0, 1, 0]  # an SN called AGN, one called asteroid
    runs = [("a", fake_run(tmp_path / "1.json", 0, 0.8, 0.8, (0.9, 0.7, 0.8, 0.75), one.tolist())),
            ("a", fake_run(tmp_path / "2.json", 1, 0.8, 0.8, (0.9, 0.7, 0.8, 0.75), two.tolist()))]
    classes, total = summed_confusion(runs, "a")
    assert classes[1] == "SN" and total[1].tolist() == [1, 2, 0, 1, 0]
    assert row_normalised(total)[1].tolist() == [0.25, 0.5, 0.0, 0.25, 0.0]


def test_a_run_that_is_not_multiclass_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"source": "ztf", "evaluations": [{"role": "source", "part": "test", "bacc": 0.9}]}))
    good = fake_run(tmp_path / "good.json", 0, 0.8, 0.8, (0.9, 0.7, 0.8, 0.75))
    code = main(["stamp-classifier", "--survey", "ztf", "--variant", "a", "--variant", "b",
                 "--run", f"a={good}", "--run", f"b={bad}", "--out-dir", str(tmp_path / "out")])
    assert code == 2 and not (tmp_path / "out" / "summary.csv").exists()
