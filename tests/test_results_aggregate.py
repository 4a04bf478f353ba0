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
    assert "removed 10 per-pair table(s) or method-pair statistics no longer configured" in caplog.text


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


# --- more than two methods ----------------------------------------------------------------------

TWO = ["hits", "des"]
FOUR = ("finetune", "mme", "st", "ent")


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A study of four methods (two of them lambda methods), 3 splits, aggregated."""
    root = tmp_path_factory.mktemp("extended")
    runs_list, config = fabricate_study(root, TWO, splits=3, shots=[1, 5], lambdas=[0.1, 1.0], methods=FOUR)
    out = root / "out"
    assert main(["aggregate", "--runs-list", str(runs_list), "--config", str(config), "--out-dir", str(out)]) == 0
    return runs_list, config, out


def test_expected_outputs_depend_on_the_methods():
    published = expected_outputs(SURVEYS)
    assert expected_outputs(SURVEYS, methods=["mme", "finetune"]) == published
    assert [p for p in published if p.startswith("stats/")] == [
        "stats/mme_vs_finetune.csv", "stats/method_pairs.csv", "stats/vs_baseline.csv"]
    four = expected_outputs(SURVEYS, methods=list(FOUR))
    assert sorted(p for p in four if p.startswith("stats/") and "_vs_" in p) == sorted(
        f"stats/{a}_vs_{b}.csv" for a, b in [("mme", "finetune"), ("st", "finetune"), ("ent", "finetune"),
                                              ("st", "mme"), ("ent", "mme"), ("ent", "st")])
    assert len(expected_outputs(SURVEYS, methods=["dann"])) == len(published) - 1
    for bad in (["sgd"], [], ["mme", "mme"], "mme"):
        with pytest.raises(SettingError, match="methods"):
            expected_outputs(SURVEYS, methods=bad)


def test_every_method_is_in_every_table(extended):
    _, _, out = extended
    assert files_under(out) == sorted(expected_outputs(TWO, methods=list(FOUR)))
    by_shots = pd.read_csv(out / "tables/methods_by_shots.csv")
    assert list(dict.fromkeys(by_shots["method"])) == list(FOUR)  # the vocabulary's order
    assert len(by_shots) == 2 * 4 * 2 * 2  # pairs x methods x shots x domains
    beat = pd.read_csv(out / "tables/shots_to_beat.csv")
    assert beat.groupby("pair")["method"].apply(list).tolist() == [list(FOUR)] * 2
    assert "S+T: shots (significant)" in (out / "tables/shots_to_beat.md").read_text()
    pair = pd.read_csv(out / "tables/pairs/des-to-hits.csv")
    assert {"st_target_mean", "ent_source_mean", "mme_target_n_splits"} <= set(pair.columns)
    lambdas = pd.read_csv(out / "tables/lambda_selection.csv")
    assert set(lambdas["method"]) == {"mme", "ent"} and len(lambdas) == 2 * 2 * 2 * 2  # pairs x methods x shots x λ
    assert set(pd.read_csv(out / "tables/lambda_choices.csv")["method"]) == {"mme", "ent"}
    stops = pd.read_csv(out / "tables/all_evaluations.csv")
    assert {"st", "ent", "ent-selected", "mme-selected"} <= set(stops["kind"])


def test_every_pair_of_methods_is_tested_and_ranked(extended):
    _, _, out = extended
    pairs = pd.read_csv(out / "stats/method_pairs.csv")
    assert set(pairs["comparison"]) == {"mme - finetune", "st - finetune", "ent - finetune", "st - mme",
                                        "ent - mme", "ent - st"}
    assert pairs["family"].nunique() == 2 * 2 * 6 * 2  # pairs x domains x comparisons x tests
    headline = pd.read_csv(out / "stats/mme_vs_finetune.csv")
    assert set(headline["comparison"]) == {"mme - finetune"} and len(headline) == 2 * 2 * 2 * 2
    same = pairs[pairs["comparison"] == "mme - finetune"].reset_index(drop=True)
    pd.testing.assert_frame_equal(headline, same)
    ent_st = pd.read_csv(out / "stats/ent_vs_st.csv")
    assert set(ent_st[["method_a", "method_b"]].apply(tuple, axis=1)) == {("ent", "st")}
    winners = pd.read_csv(out / "tables/winners.csv")
    assert len(winners) == 2 * 2 * 6  # pairs x domains x pairs of methods
    ranking = pd.read_csv(out / "tables/ranking.csv")
    assert len(ranking) == 2 * 2 * 4  # pairs x shots x methods
    for _, group in ranking.groupby(["pair", "shots"]):
        assert group["rank"].min() == 1 and group["mean"].is_monotonic_decreasing
    # at 5 shots MME (0.72 + 0.2) is best on the target in the fabricated study
    top = ranking[(ranking["shots"] == 5) & (ranking["rank"] == 1)]
    assert set(top["method"]) == {"mme"}
    cost = pd.read_csv(out / "tables/source_cost_target_gain.csv")
    assert len(cost) == 2 * 4 * 2
    ft = cost[cost["method"] == "finetune"]
    mme = cost[cost["method"] == "mme"]
    assert (ft["source_loss"] > 0.1).all() and (mme["source_loss"].abs() < 0.05).all()


def test_report_shows_every_method_and_the_findings(extended):
    _, _, out = extended
    html = (out / "report.html").read_text()
    for needle in ("S+T", "ENT", "FT, MME, S+T and ENT by shots", "S+T − FT, all tests", "ENT − S+T, all tests",
                   "The study&#x27;s findings", "3 splits cannot test the paper's claims"):
        assert needle in html
    verdicts = pd.read_csv(out / "tables/findings.csv")
    assert list(verdicts.columns[:14]) == ["finding", "claim", "scope", "method", "direction", "margin", "effect",
                                           "ci_low", "ci_high", "n_splits", "test", "p", "verdict", "evidence"]
    # 3 splits: no verdict, but every effect and interval; the study rows come first
    assert set(verdicts["verdict"]) == {"not testable"}
    assert verdicts["scope"].iloc[0] == "study" and verdicts["effect"].notna().all()
    assert set(verdicts.loc[verdicts["finding"] == "2", "method"]) == set(FOUR)
    source = verdicts[verdicts["finding"].isin(["4a", "4b"]) & (verdicts["scope"] != "study")]
    ft = source[source["method"] == "finetune"]
    # FT forgets 0.15 in every split: its effect and interval are shown even untested
    assert (ft["effect"] < -0.1).all() and (ft["ci_low"] < ft["effect"]).all() and (ft["ci_high"] > ft["effect"]).all()


def test_runs_of_a_method_that_is_not_configured_are_an_error_naming_them(extended, tmp_path, capsys):
    runs_list, _, _ = extended
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"study": {"surveys": TWO, "methods": ["finetune", "mme"]}}))
    status, out = aggregate(runs_list.read_text().split(), config, tmp_path)
    assert status == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "not configured (methods: finetune, mme)" in err
    assert "st (" in err and "ent (" in err and "/runs/st/" in err


def test_methods_in_config_are_checked(extended, tmp_path, capsys):
    runs_list, _, _ = extended
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"study": {"surveys": TWO, "methods": ["finetune", "sgd"]}}))
    assert main(["aggregate", "--runs-list", str(runs_list), "--config", str(config),
                 "--out-dir", str(tmp_path / "out")]) == 2
    assert "study.methods" in capsys.readouterr().err


def test_statistics_of_methods_no_longer_configured_are_removed(extended, tmp_path):
    runs_list, _, before = extended
    out = tmp_path / "out"
    shutil.copytree(before, out)
    (out / "stats" / "st_vs_sgd.csv").write_text("a user's file")  # not named like one of ours: kept
    kept = [p for p in runs_list.read_text().split() if "/st/" not in p and "/ent" not in p]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"study": {"surveys": TWO, "methods": ["mme", "finetune"]}}))
    status, out = aggregate(kept, config, tmp_path)
    assert status == 0
    assert sorted(p.name for p in (out / "stats").iterdir()) == [
        "method_pairs.csv", "mme_vs_finetune.csv", "st_vs_sgd.csv", "vs_baseline.csv"]
    assert set(pd.read_csv(out / "tables/methods_by_shots.csv")["method"]) == {"finetune", "mme"}


def test_stamp_classifier_outputs_are_a_section_of_the_report(study, tmp_path, capsys):
    """`rbda aggregate --stamp-classifier DIR` (the workflow passes it when configured): the repeated-run
    comparison, its tests, confusion figure and the published figures (labelled) in report.html."""
    from test_stamp_classifier import fake_run

    sc_dir = tmp_path / "stamp_classifier"
    args = ["stamp-classifier", "--survey", "ztf", "--out-dir", str(sc_dir)]
    for v, accuracies in {"cnn": [0.80, 0.81, 0.82], "deephits": [0.85, 0.86, 0.84]}.items():
        args += ["--variant", v]
        for k, value in enumerate(accuracies):
            args += ["--run", f"{v}={fake_run(tmp_path / f'{v}{k}.json', k, value, value, (0.9, 0.7, 0.8, 0.75))}"]
    assert main(args) == 0
    runs_list, config = study
    out = tmp_path / "out"
    base = ["aggregate", "--runs-list", str(runs_list), "--config", str(config), "--out-dir", str(out)]
    assert main([*base, "--stamp-classifier", str(sc_dir)]) == 0
    assert files_under(out) == sorted(expected_outputs(SURVEYS))  # a section, no file of its own
    report = (out / "report.html").read_text()
    section = report.split('<section id="stamp-classifier">', 1)[1].split("</section>", 1)[0]
    assert "<td>0.8500 ± 0.0100 (n=3)</td>" in section and "<td>0.8100 ± 0.0100 (n=3)</td>" in section
    row = section.split("<td>deephits &gt; cnn</td>", 1)[1].split("</tr>", 1)[0]
    assert re.findall(r"<td>([^<]*)</td>", row)[:4] == ["0.04", "0.004025", "0.004025", "True"]
    assert "real ALeRCE set only" in section and "<td>0.8652 ± 0.0024</td>" in section  # EarlySN Table 3
    assert section.count("data:image/png;base64,") == 1
    plain = main(base[:-1] + [str(tmp_path / "plain")])  # without the option: no such section
    assert plain == 0 and 'id="stamp-classifier"' not in (tmp_path / "plain" / "report.html").read_text()

    (sc_dir / "tests.csv").unlink()
    out2 = tmp_path / "out2"
    assert main([*base[:-1], str(out2), "--stamp-classifier", str(sc_dir)]) == 2
    assert f"{sc_dir / 'tests.csv'}" in capsys.readouterr().err
    assert not (out2 / "report.html").exists()
