"""rbda aggregate end to end on a fabricated study (3 surveys, 2 splits)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from results_helpers import fabricate_study

from rbda.cli import main
from rbda.errors import SettingError
from rbda.provenance import lock_provenance
from rbda.results.aggregate import lock_sentence
from rbda.results.outputs import FIGURES, expected_outputs

SURVEYS = ["hits", "des", "atlas"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("study")
    return fabricate_study(root, SURVEYS, splits=2, shots=[1, 5], lambdas=[0.1, 1.0])


@pytest.fixture(scope="module")
def aggregated(study, tmp_path_factory) -> Path:
    runs_list, config = study
    out = tmp_path_factory.mktemp("out")
    assert main(["aggregate", "--runs-list", str(runs_list), "--config", str(config),
                 "--out-dir", str(out)]) == 0
    return out


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_outputs_are_exactly_the_expected_ones(aggregated):
    assert files_under(aggregated) == sorted(expected_outputs(SURVEYS))


def test_expected_outputs_depend_on_surveys_only():
    three = expected_outputs(SURVEYS)
    four = expected_outputs(SURVEYS + ["ztf"])
    assert len(four) - len(three) == 2 * (12 - 6)  # csv + md per extra pair
    assert "tables/pairs/des-to-hits.md" in three and "report.html" in three
    with pytest.raises(SettingError):
        expected_outputs(["hits"])
    subset = expected_outputs(SURVEYS, [("des", "hits")])
    assert [p for p in subset if p.startswith("tables/pairs/")] == [
        "tables/pairs/des-to-hits.csv", "tables/pairs/des-to-hits.md"]
    with pytest.raises(SettingError, match="pairs"):
        expected_outputs(SURVEYS, [("des", "ztf")])


def test_tables_agree_with_the_run_files(aggregated, study):
    runs_list, _ = study
    runs = [json.loads(Path(p).read_text()) for p in runs_list.read_text().split()]
    on_target = [e["bacc"] for r in runs if r["method"] == "baseline" and r["source"] == "des"
                 for e in r["evaluations"] if e["survey"] == "hits"]
    baseline = pd.read_csv(aggregated / "tables/baseline.csv")
    cell = baseline[(baseline.trained_on == "des") & (baseline.tested_on == "hits")].iloc[0]
    assert cell["mean"] == pytest.approx(sum(on_target) / 2, abs=1e-6)
    assert cell["n_splits"] == 2
    methods = pd.read_csv(aggregated / "tables/methods_by_shots.csv")
    assert set(methods["method"]) == {"finetune", "mme"}
    assert len(methods) == 6 * 2 * 2 * 2  # pairs x methods x shots x domains


def test_statistics_are_explained_where_weak(aggregated):
    tests = pd.read_csv(aggregated / "stats/mme_vs_finetune.csv")
    wilcoxon = tests[tests["test"] == "wilcoxon"]
    assert wilcoxon["note"].str.contains("smallest attainable p is 0.5").all()
    assert tests["p"].notna().all()
    assert set(tests["test"]) == {"paired_t", "wilcoxon"}
    assert tests["family"].nunique() == 6 * 2 * 2  # pairs x domains x tests; members: the shot counts
    assert tests["family_size"].eq(2).all()
    assert len(tests) == 6 * 2 * 2 * 2  # pairs x shots x domains x tests
    versus = pd.read_csv(aggregated / "stats/vs_baseline.csv")
    assert set(versus["domain"]) == {"source", "target"}  # the source-domain tests exist
    assert set(versus.loc[versus["domain"] == "source", "alternative"]) == {"two-sided"}


def test_report_is_self_contained_with_every_figure(aggregated):
    html = (aggregated / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == len(FIGURES) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(?!data:|#)', html)  # no external resources
    for needle in ("How to read", "meaningful <b>only when this study ran on the real surveys",
                   "2.13.0", "per_split", "DES→HiTS", "How the runs stopped", "stopped_by_max_epochs",
                   "ties_broken_by", "The study&#x27;s findings", "Ranking of the methods",
                   "Source cost vs target gain"):
        assert needle in html


def test_report_names_the_lock_of_the_environment_that_made_it(aggregated):
    lock = lock_provenance()
    html = (aggregated / "report.html").read_text()
    assert lock["lock_sha256"] is not None  # the tests run from the checkout
    assert lock_sentence(lock) in html and lock["lock_sha256"] in html


def test_lock_sentence_says_when_installed_packages_differ_or_there_is_no_lock():
    assert "differ from the lock" in lock_sentence({"lock_sha256": "ab", "lock_matches_installed": False})
    assert "every locked package installed" in lock_sentence({"lock_sha256": "ab", "lock_matches_installed": True})
    assert "outside a source checkout" in lock_sentence({"lock_sha256": None, "lock_matches_installed": None})


def test_synthetic_surveys_are_flagged_in_the_comparison_with_the_paper():
    from rbda.results.aggregate import synthetic_surveys

    effective = {"config": {"surveys": {"hits": {"source": "synthetic"}, "des": {"source": "download"}}},
                 "study": {"surveys": ["hits", "des"]}}
    assert synthetic_surveys(effective) == ["hits"]
    assert synthetic_surveys({"surveys": ["hits", "des"]}) == []


def aggregate(runs: list[str], config: Path, tmp_path: Path) -> tuple[int, Path]:
    """`rbda aggregate` on ``runs`` (written to a runs list); returns its exit status and out-dir."""
    listing = tmp_path / "runs.txt"
    listing.write_text("\n".join(runs) + "\n")
    out = tmp_path / "out"
    status = main(["aggregate", "--runs-list", str(listing), "--config", str(config), "--out-dir", str(out)])
    return status, out


def test_missing_baseline_fails_cleanly_without_output(study, tmp_path, capsys):
    runs_list, config = study
    kept = [p for p in runs_list.read_text().split() if "/baseline/des/" not in p]
    status, out = aggregate(kept, config, tmp_path)
    assert status == 2
    assert "no baseline run trained on 'des'" in capsys.readouterr().err
    assert not out.exists()


def test_duplicate_run_fails_naming_both_files(study, tmp_path, capsys):
    runs_list, config = study
    paths = runs_list.read_text().split()
    copy = tmp_path / "copy.json"
    shutil.copy(paths[0], copy)
    status, out = aggregate(paths + [str(copy)], config, tmp_path)
    assert status == 2
    err = capsys.readouterr().err
    assert str(copy) in err and paths[0] in err
    assert not out.exists()


def test_failure_while_writing_leaves_no_partial_output(study, tmp_path, monkeypatch):
    from rbda.results import figures

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(figures, "lambda_curves", broken)
    runs_list, config = study
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="figure failed"):
        main(["aggregate", "--runs-list", str(runs_list), "--config", str(config), "--out-dir", str(out)])
    assert files_under(out) == []
    assert list(out.iterdir()) == []  # the staging folder is gone too


def test_config_surveys_from_workflow_effective_config(study, tmp_path, capsys):
    runs_list, _ = study
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"config": {"x": 1}, "study": {"surveys": ["hits"]}}))
    assert main(["aggregate", "--runs-list", str(runs_list), "--config", str(config),
                 "--out-dir", str(tmp_path / "out")]) == 2
    assert "study.surveys" in capsys.readouterr().err


def test_without_per_lambda_runs_the_lambda_table_is_empty_but_present(study, tmp_path):
    runs_list, config = study
    kept = [p for p in runs_list.read_text().split() if "/mme/" not in p]
    status, out = aggregate(kept, config, tmp_path)
    assert status == 0
    assert files_under(out) == sorted(expected_outputs(SURVEYS))
    assert pd.read_csv(out / "tables/lambda_selection.csv").empty
    assert "No per-λ runs (MME, ENT) were given" in (out / "report.html").read_text()


def test_configured_subset_of_pairs(study, tmp_path):
    runs_list, _ = study
    kept = [p for p in runs_list.read_text().split() if "/baseline/" in p or "des-to-hits" in p]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"study": {"surveys": SURVEYS, "pairs": ["des-to-hits"]}}))
    status, out = aggregate(kept, config, tmp_path)
    assert status == 0
    assert files_under(out) == sorted(expected_outputs(SURVEYS, [("des", "hits")]))
    assert pd.read_csv(out / "tables/shots_to_beat.csv")["pair"].unique().tolist() == ["des-to-hits"]


def test_tables_of_pairs_no_longer_configured_are_removed(study, tmp_path, caplog):
    """Re-aggregating a smaller study into the same folder leaves no stale per-pair table."""
    runs_list, config = study
    status, out = aggregate(runs_list.read_text().split(), config, tmp_path)
    assert status == 0 and (out / "tables/pairs/hits-to-des.md").exists()
    for own in ("notes.md", "des-to-hits.backup.csv", "hits-to-des.old.md"):  # not named like a pair table: kept
        (out / "tables/pairs" / own).write_text("a user's file")
    subset = tmp_path / "subset.json"
    subset.write_text(json.dumps({"study": {"surveys": SURVEYS, "pairs": ["des-to-hits"]}}))
    kept = [p for p in runs_list.read_text().split() if "/baseline/" in p or "des-to-hits" in p]
    with caplog.at_level("INFO", logger="rbda"):
        status, out = aggregate(kept, subset, tmp_path)
    assert status == 0
    assert sorted(p.name for p in (out / "tables/pairs").iterdir()) == [
        "des-to-hits.backup.csv", "des-to-hits.csv", "des-to-hits.md", "hits-to-des.old.md", "notes.md"]
    assert "removed 10 per-pair table(s) of pairs no longer configured" in caplog.text


@pytest.mark.parametrize("pairs, message", [(["des-to-ztf"], "pairs of two distinct surveys"),
                                            (["des_hits"], "source-to-target"),
                                            ("des-to-hits", "source-to-target")])
def test_bad_pairs_in_config_name_the_key(study, tmp_path, capsys, pairs, message):
    runs_list, _ = study
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"study": {"surveys": SURVEYS, "pairs": pairs}}))
    assert main(["aggregate", "--runs-list", str(runs_list), "--config", str(config),
                 "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "(study.pairs)" in err and message in err
