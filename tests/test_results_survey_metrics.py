"""The metrics survey teams report (ROC AUC, purity, completeness, FPR at 95%/99% completeness)
carried from the run JSONs into tables/survey_metrics and the report, beside BACC."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from results_helpers import fabricate_study

from rbda.cli import main
from rbda.results import tables
from rbda.results.runs import load_runs

SURVEYS = ["hits", "des"]


def team_metrics(bacc: float, split: int) -> dict:
    """Made-up metrics that are a known function of the evaluation's BACC and split."""
    return {"roc_auc": min(bacc + 0.03, 1.0), "purity": bacc - 0.01 * split, "completeness": bacc,
            "at_completeness": {
                "0.95": {"fpr": 0.1 + 0.01 * split, "completeness": 0.94, "purity": 0.9, "threshold": 0.7},
                "0.99": None if split == 1 else {"fpr": 0.3, "completeness": 0.98, "purity": 0.8,
                                                 "threshold": 0.2}}}


def study_with_metrics(root: Path, with_metrics: bool = True) -> tuple[Path, Path]:
    runs_list, config = fabricate_study(root, SURVEYS, splits=2, shots=[1, 5], lambdas=[0.1, 1.0])
    if with_metrics:
        for path in runs_list.read_text().split():
            data = json.loads(Path(path).read_text())
            for evaluation in data["evaluations"]:
                evaluation["survey_metrics"] = team_metrics(evaluation["bacc"], data["split"])
            Path(path).write_text(json.dumps(data))
    return runs_list, config


def report_section(out: Path) -> str:
    report = (out / "report.html").read_text()
    assert '<section id="survey-metrics">' in report
    return report.split('<section id="survey-metrics">', 1)[1].split("</section>", 1)[0]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return study_with_metrics(tmp_path_factory.mktemp("study"))


def test_table_means_each_metric_over_splits_on_the_target_beside_bacc(study):
    runs_list, _ = study
    runs = load_runs(runs_list.read_text().split())
    evaluations = tables.tidy_evaluations(runs)
    table = tables.survey_metrics_table(evaluations, [("hits", "des"), ("des", "hits")])

    # the selected MME runs at 5 shots on DES (HiTS -> DES), by hand from the run files
    selected = [r for r in runs if r.kind == "mme-selected" and r.source == "hits" and r.shots == 5]
    on_target = [next(e for e in r.data["evaluations"] if e["role"] == "target") for r in selected]
    row = table[(table["method"] == "mme") & (table["source"] == "hits") & (table["shots"] == 5)].iloc[0]
    assert row["n_splits"] == 2
    assert row["bacc"] == pytest.approx(sum(e["bacc"] for e in on_target) / 2)
    assert row["roc_auc"] == pytest.approx(sum(min(e["bacc"] + 0.03, 1) for e in on_target) / 2)
    assert row["purity"] == pytest.approx(sum(e["bacc"] - 0.01 * r.split for e, r in zip(on_target, selected)) / 2)
    assert row["fpr_at_95"] == pytest.approx(0.105)
    assert row["completeness_at_95"] == pytest.approx(0.94)
    # split 1 reached no 99% threshold: the mean is over the split that did
    assert row["fpr_at_99"] == pytest.approx(0.3)

    # the baseline: the source's model on the target survey, shots 0
    base = table[(table["method"] == "baseline") & (table["source"] == "hits")].iloc[0]
    assert (base["target"], base["shots"], base["n_splits"]) == ("des", 0, 2)
    home = [next(e for e in r.data["evaluations"] if e["survey"] == "des")
            for r in runs if r.kind == "baseline" and r.source == "hits"]
    assert base["roc_auc"] == pytest.approx(sum(min(e["bacc"] + 0.03, 1) for e in home) / 2)

    # every (method, pair, shots) once: 2 pairs x (baseline + 2 methods x 2 shot counts)
    assert len(table) == 2 * (1 + 2 * 2)
    assert set(table["method"]) == {"baseline", "finetune", "mme"}


def test_aggregate_writes_the_table_and_the_report_shows_it(study, tmp_path):
    runs_list, config = study
    out = tmp_path / "out"
    assert main(["aggregate", "--runs-list", str(runs_list), "--config", str(config), "--out-dir", str(out)]) == 0
    table = pd.read_csv(out / "tables" / "survey_metrics.csv")
    assert list(table.columns) == ["method", "source", "target", "shots", "n_splits", "bacc", *tables.SURVEY_METRICS]
    assert not table["roc_auc"].isna().any()
    markdown = (out / "tables" / "survey_metrics.md").read_text()
    assert "roc_auc" in markdown and "fpr_at_95" in markdown
    section = report_section(out)
    assert "What survey teams report" in section
    assert "fpr_at_99" in section and "do not record" not in section


def test_runs_without_the_metrics_say_so_instead_of_a_table_of_blanks(tmp_path):
    runs_list, config = study_with_metrics(tmp_path / "study", with_metrics=False)
    out = tmp_path / "out"
    assert main(["aggregate", "--runs-list", str(runs_list), "--config", str(config), "--out-dir", str(out)]) == 0
    table = pd.read_csv(out / "tables" / "survey_metrics.csv")
    assert table["roc_auc"].isna().all() and not table["bacc"].isna().any()
    section = report_section(out)
    assert "do not record these metrics" in section and "<table" not in section
    assert not any(math.isnan(x) for x in table["bacc"])
