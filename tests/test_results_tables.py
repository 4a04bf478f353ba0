"""Tables on hand-made runs with known answers: means, stds, shots to beat, winners."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from results_helpers import adapted_run, baseline_run

from rbda.errors import RbdaError
from rbda.results import stats, tables
from rbda.results.runs import validate_run

SURVEYS = ["des", "hits"]
PAIRS = [("des", "hits"), ("hits", "des")]


def runs_from(dicts):
    return [validate_run(d, Path(f"run-{i}.json")) for i, d in enumerate(dicts)]


def baselines(des_on_hits=(0.70, 0.72, 0.74)):
    out = []
    for k, value in enumerate(des_on_hits):
        out.append(baseline_run("des", k, {"des": 0.95, "hits": value}))
        out.append(baseline_run("hits", k, {"hits": 0.97, "des": 0.60}))
    return out


def study(ft_target: dict[int, list[float]], mme_target: dict[int, list[float]], **kw):
    dicts = baselines(**kw)
    for method, curve in (("finetune", ft_target), ("mme", mme_target)):
        for shots, values in curve.items():
            for k, value in enumerate(values):
                run = adapted_run(method, "des", "hits", k, shots, 0.8, value,
                                  lam=0.1 if method == "mme" else None)
                if method == "mme":
                    run["selection"] = {"rule": "per_split", "chosen_lambda": 0.1,
                                        "candidates": [{"lambda": 0.1, "val_bacc": 0.9}]}
                dicts.append(run)
    runs = runs_from(dicts)
    evaluations = tables.tidy_evaluations(runs)
    base = tables.baseline_scores(evaluations)
    scores = tables.method_scores(evaluations)
    return base, scores


def test_baseline_table_mean_and_sample_std():
    base, _ = study({}, {})
    table = tables.baseline_table(base, SURVEYS)
    cell = table[(table.trained_on == "des") & (table.tested_on == "hits")].iloc[0]
    assert cell["mean"] == pytest.approx(0.72)
    assert cell["std"] == pytest.approx(0.02)  # ddof=1 of 0.70, 0.72, 0.74
    assert cell["n_splits"] == 3
    assert table[["trained_on", "tested_on"]].values.tolist() == [
        ["des", "des"], ["des", "hits"], ["hits", "des"], ["hits", "hits"]]
    matrix = tables.baseline_matrix(table, SURVEYS)
    assert matrix.loc["DES", "HiTS"] == "0.720 ± 0.020"
    assert matrix.loc["HiTS", "HiTS"] == "0.970 ± 0.000"


def test_single_split_has_no_std_and_says_so():
    assert tables.format_mean_std(0.9, math.nan, 1) == "0.900 (1 split)"
    assert tables.format_mean_std(math.nan, math.nan, 0) == "–"


def _shots(ft, mme, **kw):
    base, scores = study(ft, mme, **kw)
    baseline = tables.baseline_table(base, SURVEYS)
    methods = tables.methods_table(scores)
    versus = stats.compare_with_baseline(scores, base)
    return tables.shots_to_beat(methods, baseline, versus, [("des", "hits")]).set_index("method")


def test_shots_to_beat_mean_rule_and_never():
    # baseline DES on HiTS: mean 0.72
    ft = {1: [0.70, 0.71, 0.72], 5: [0.71, 0.73, 0.74], 20: [0.90, 0.91, 0.92]}   # 5: mean 0.7267 > 0.72
    mme = {1: [0.60, 0.61, 0.62], 5: [0.70, 0.71, 0.72], 20: [0.71, 0.72, 0.73]}  # 20: mean 0.72, not >
    table = _shots(ft, mme)
    assert table.loc["finetune", "shots_to_beat"] == 5
    assert table.loc["mme", "shots_to_beat"] == tables.NEVER
    assert table.loc["mme", "shots_to_beat_significant"] == tables.NEVER
    # at 5 shots FT's gain is tiny (not significant); at 20 it is large
    assert table.loc["finetune", "shots_to_beat_significant"] == 20
    assert table.loc["finetune", "baseline_target_mean"] == pytest.approx(0.72)
    assert table.loc["finetune", "shots_tested"] == "1 5 20"


def test_shots_to_beat_with_one_split_is_not_testable():
    table = _shots({1: [0.9]}, {1: [0.5]}, des_on_hits=(0.7,))
    assert table.loc["finetune", "shots_to_beat"] == 1
    assert table.loc["finetune", "shots_to_beat_significant"] == tables.NOT_TESTABLE
    assert "fewer than 2 paired splits" in table.loc["finetune", "note"]
    assert table.loc["mme", "shots_to_beat"] == tables.NEVER


def test_methods_table_by_domain():
    _, scores = study({5: [0.8, 0.9]}, {5: [0.85, 0.87]})
    methods = tables.methods_table(scores).set_index(["method", "domain", "shots"])
    assert methods.loc[("finetune", "target", 5), "mean"] == pytest.approx(0.85)
    assert methods.loc[("finetune", "target", 5), "std"] == pytest.approx(math.sqrt(0.005))
    assert methods.loc[("mme", "source", 5), "mean"] == pytest.approx(0.8)


def test_winner_from():
    assert tables.winner_from([1, 5, 10], ["FT", "MME", "MME"]) == "MME from 5 shots"
    assert tables.winner_from([1, 5], ["MME", "MME"]) == "MME from 1 shot"
    assert tables.winner_from([1, 5], ["MME", "tie"]) == "tie at 5 shots"
    assert tables.winner_from([], []) == "–"


def test_winners_table_counts_and_direction():
    ft = {1: [0.70, 0.71, 0.72], 5: [0.80, 0.81, 0.82]}
    mme = {1: [0.75, 0.76, 0.77], 5: [0.78, 0.79, 0.80]}
    _, scores = study(ft, mme)
    methods = tables.methods_table(scores)
    versus = stats.compare_mme_with_finetune(scores)
    winners = tables.winners_table(methods, versus).set_index("domain")
    assert winners.loc["target", ["method_a", "method_b"]].tolist() == ["mme", "finetune"]
    assert winners.loc["target", "winner_by_shots"] == "1:MME 5:FT"
    assert winners.loc["target", "a_wins"] == "1/2"
    assert winners.loc["target", "wins_from"] == "FT from 5 shots"
    assert winners.loc["source", "winner_by_shots"] == "1:tie 5:tie"


def test_missing_baseline_for_a_pair_is_an_error():
    dicts = [baseline_run("hits", 0, {"hits": 0.97, "des": 0.6})]
    dicts += [adapted_run("finetune", "des", "hits", 0, 5, 0.8, 0.8)]
    runs = runs_from(dicts)
    evaluations = tables.tidy_evaluations(runs)
    with pytest.raises(RbdaError, match="no baseline run trained on 'des'"):
        tables.check_study(tables.baseline_scores(evaluations), tables.method_scores(evaluations), SURVEYS,
                           PAIRS)


def test_baseline_split_missing_for_pair_runs_is_an_error():
    dicts = baselines(des_on_hits=(0.7,))
    dicts += [adapted_run("finetune", "des", "hits", 1, 5, 0.8, 0.8)]
    evaluations = tables.tidy_evaluations(runs_from(dicts))
    with pytest.raises(RbdaError, match=r"des-to-hits has adapted runs for split\(s\) \[1\]"):
        tables.check_study(tables.baseline_scores(evaluations), tables.method_scores(evaluations), SURVEYS,
                           PAIRS)


def test_markdown_escapes_pipes_and_formats_floats():
    md = tables.to_markdown(pd.DataFrame({"a|b": ["x|y"], "v": [0.123456]}))
    assert md.splitlines()[0] == "| a\\|b | v |"
    assert "x\\|y" in md and "0.1235" in md


def test_runs_of_a_pair_outside_the_configured_pairs_are_an_error():
    dicts = baselines(des_on_hits=(0.7,)) + [adapted_run("finetune", "des", "hits", 0, 5, 0.8, 0.8)]
    evaluations = tables.tidy_evaluations(runs_from(dicts))
    with pytest.raises(RbdaError, match="des-to-hits, which is not among the configured pairs"):
        tables.check_study(tables.baseline_scores(evaluations), tables.method_scores(evaluations), SURVEYS,
                           [("hits", "des")])


def selected(split, shots, lam, tie, broken_by, rule="per_split"):
    data = adapted_run("mme", "des", "hits", split, shots, 0.9, 0.8, lam=lam)
    data["selection"] = {"rule": rule, "chosen_lambda": lam, "tie": tie, "tie_broken_by": broken_by,
                         "candidates": [{"lambda": lam, "val_bacc": 0.9}]}
    return data


def test_lambda_choices_count_ties_and_how_they_were_broken():
    runs = runs_from([selected(0, 1, 0.1, False, "none"), selected(1, 1, 0.1, True, "recent_epochs"),
                      selected(0, 5, 0.5, True, "smaller_lambda"), selected(1, 5, 0.1, True, "recent_epochs")])
    table = tables.lambda_choices(tables.chosen_lambdas(runs))
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["pair"], row["rule"], row["n_selections"], row["n_choices"], row["n_ties"]) == \
        ("des-to-hits", "per_split", 4, 4, 3)
    assert row["chosen_lambdas"] == "0.1 (3), 0.5 (1)"
    assert row["ties_broken_by"] == "recent_epochs (2), smaller_lambda (1)"
    untied = tables.lambda_choices(tables.chosen_lambdas(runs_from([selected(0, 1, 0.1, False, "none")])))
    assert (untied.iloc[0]["n_ties"], untied.iloc[0]["ties_broken_by"]) == (0, "–")


def test_a_per_pair_choice_counts_once_however_many_runs_it_selects():
    """A per_pair choice is made per split and applied to every shot count: 2 splits x 3 shot counts
    are 6 selections but 2 choices, and 2 tied choices are 2 ties, not 6."""
    runs = runs_from([selected(k, n, 0.1, True, "recent_epochs", rule="per_pair") for k in (0, 1) for n in (1, 5, 10)])
    row = tables.lambda_choices(tables.chosen_lambdas(runs)).iloc[0]
    assert (row["n_selections"], row["n_choices"], row["n_ties"], row["ties_broken_by"]) == \
        (6, 2, 2, "recent_epochs (2)")


def test_training_stops_count_the_cap_and_patience_per_method():
    dicts = baselines()
    capped = adapted_run("finetune", "des", "hits", 0, 5, 0.9, 0.8)
    capped["training"].update(stopped_by="max_epochs", best_epoch=1)
    zero = adapted_run("finetune", "des", "hits", 1, 5, 0.9, 0.8)
    zero["training"].update(best_epoch=0)
    table = tables.training_stops(runs_from(dicts + [capped, zero])).set_index("method")
    assert table.loc["baseline", ["runs", "stopped_by_patience", "stopped_by_max_epochs"]].tolist() == [6, 6, 0]
    assert table.loc["finetune", ["runs", "stopped_by_patience", "stopped_by_max_epochs"]].tolist() == [2, 1, 1]
    assert table.loc["finetune", ["best_epoch_0", "best_epoch_1"]].tolist() == [1, 1]
    assert "mme" not in table.index


# --- more than two methods ------------------------------------------------------------------------


def multi(curves: dict[str, dict[int, list[float]]], source_bacc: float = 0.8):
    """Runs of several methods on des-to-hits (target BACC per split; ``ent``/``mme`` selected)."""
    dicts = baselines()
    for method, curve in curves.items():
        for shots, values in curve.items():
            for k, value in enumerate(values):
                lam = 0.1 if method in ("mme", "ent") else None
                run = adapted_run(method, "des", "hits", k, shots, source_bacc, value, lam=lam)
                if lam is not None:
                    run["selection"] = {"rule": "per_pair", "chosen_lambda": lam,
                                        "candidates": [{"lambda": lam, "val_bacc": 0.9}]}
                dicts.append(run)
    return runs_from(dicts)


FOUR_METHODS = {"finetune": {5: [0.80, 0.81, 0.83]}, "mme": {5: [0.90, 0.92, 0.91]},
                "st": {5: [0.83, 0.80, 0.81]}, "ent": {5: [0.70, 0.69, 0.72]}}  # S+T: FT's mean


def test_method_scores_keep_every_adaptation_method():
    runs = multi(FOUR_METHODS)
    evaluations = tables.tidy_evaluations(runs)
    scores = tables.method_scores(evaluations)
    assert set(scores["method"]) == {"finetune", "mme", "st", "ent"}
    assert tables.methods_in(evaluations) == ["finetune", "mme", "st", "ent"]
    methods = tables.methods_table(scores)
    table = tables.pair_table(methods, tables.baseline_table(tables.baseline_scores(evaluations), SURVEYS),
                              "des", "hits")
    assert list(table.columns)[1:5] == ["FT on source (DES)", "MME on source (DES)", "S+T on source (DES)",
                                        "ENT on source (DES)"]


def test_unselected_runs_of_a_lambda_method_are_candidates_not_scores():
    candidate = adapted_run("ent", "des", "hits", 0, 5, 0.8, 0.99, lam=0.5)
    runs = multi({"ent": {5: [0.7]}}) + runs_from([candidate])
    scores = tables.method_scores(tables.tidy_evaluations(runs))
    assert scores.loc[scores["domain"] == "target", "bacc"].tolist() == [0.7]
    lambdas = tables.lambda_scores(runs)
    assert lambdas[["method", "lambda"]].values.tolist() == [["ent", 0.5]]
    assert tables.chosen_lambdas(runs)["method"].tolist() == ["ent"]


def test_runs_of_unconfigured_methods_are_an_error_naming_them():
    runs = multi(FOUR_METHODS)
    tables.check_methods(runs, ["finetune", "mme", "st", "ent"])
    with pytest.raises(RbdaError, match=r"not configured \(methods: finetune, mme\): st \(3 run\(s\): "
                                        r"run-\d+\.json.*; ent \(3 run"):
        tables.check_methods(runs, ["finetune", "mme"])


def test_ranking_orders_methods_and_names_significant_differences():
    runs = multi(FOUR_METHODS)
    scores = tables.method_scores(tables.tidy_evaluations(runs))
    methods = tables.methods_table(scores)
    from rbda.results.outputs import method_pairs
    pairwise = stats.compare_method_pairs(scores, method_pairs(["finetune", "mme", "st", "ent"]))
    assert set(pairwise["comparison"]) == {"mme - finetune", "st - finetune", "ent - finetune", "st - mme",
                                           "ent - mme", "ent - st"}
    ranking = tables.ranking_table(methods, pairwise).set_index("method")
    assert ranking["rank"].to_dict() == {"mme": 1, "st": 2, "finetune": 2, "ent": 4}  # FT and S+T tie
    assert ranking.loc["mme", "significantly_better_than"] == "finetune st ent"
    assert ranking.loc["ent", "significantly_worse_than"] == "finetune mme st"
    assert ranking.loc["finetune", "significantly_worse_than"] == "mme"
    wide = tables.ranking_matrix(tables.ranking_table(methods, pairwise))
    assert wide.iloc[0, 2] == "MME 0.910 > FT 0.813 = S+T 0.813 > ENT 0.703"
    assert "MME > S+T" in wide.iloc[0, 3] and "FT > ENT" in wide.iloc[0, 3]
    winners = tables.winners_table(methods, pairwise)
    target = winners[winners["domain"] == "target"].set_index(["method_a", "method_b"])
    assert target.loc[("st", "finetune"), "winner_by_shots"] == "5:tie"
    assert target.loc[("ent", "st"), "wins_from"] == "S+T from 5 shots"


def test_shots_to_beat_for_every_method():
    runs = multi({"st": {1: [0.70, 0.71, 0.72], 5: [0.90, 0.91, 0.92]}, "dann": {1: [0.5, 0.5, 0.51]}})
    evaluations = tables.tidy_evaluations(runs)
    base = tables.baseline_scores(evaluations)
    scores = tables.method_scores(evaluations)
    methods = tables.methods_table(scores)
    versus = stats.compare_with_baseline(scores, base)
    table = tables.shots_to_beat(methods, tables.baseline_table(base, SURVEYS), versus, [("des", "hits")])
    assert table.set_index("method")["shots_to_beat"].to_dict() == {"st": 5, "dann": tables.NEVER}
    wide = tables.shots_to_beat_matrix(table)
    assert list(wide.columns) == ["pair", "baseline on target", "S+T: shots (significant)",
                                  "DANN: shots (significant)"]


def test_cost_gain_is_the_mean_paired_difference_with_the_baseline():
    runs = multi({"st": {5: [0.80, 0.82, 0.81]}}, source_bacc=0.85)
    evaluations = tables.tidy_evaluations(runs)
    base = tables.baseline_scores(evaluations)
    versus = stats.compare_with_baseline(tables.method_scores(evaluations), base)
    row = tables.cost_gain_table(versus).iloc[0]
    assert row["source_loss"] == pytest.approx(0.95 - 0.85)
    assert row["target_gain"] == pytest.approx(0.81 - 0.72)
    assert row["method"] == "st" and row["shots"] == 5 and row["n_splits"] == 3


def test_training_stops_count_every_method():
    runs = multi({"st": {5: [0.8]}, "dann": {5: [0.8, 0.8]}})
    table = tables.training_stops(runs).set_index("method")
    assert table.loc[["baseline", "st", "dann"], "runs"].tolist() == [6, 1, 2]


def test_a_missing_run_of_the_configured_study_is_an_error_naming_it(tmp_path):
    """Without the check a missing run silently drops out of the tables and the tests."""
    from results_helpers import fabricate_study

    from rbda.errors import RbdaError
    from rbda.results.aggregate import compute
    from rbda.results.runs import load_runs, read_runs_list

    runs_list, _ = fabricate_study(tmp_path, ["des", "hits"], splits=3, shots=[1, 5], lambdas=[0.1, 1.0])
    runs = load_runs(read_runs_list(runs_list))
    compute(runs, ["des", "hits"], [("des", "hits"), ("hits", "des")], ["finetune", "mme"], [1, 5])  # complete
    gone = [r for r in runs if not (r.kind == "finetune" and r.source == "des" and r.shots == 5 and r.split == 2)]
    assert len(gone) == len(runs) - 1
    with pytest.raises(RbdaError, match=r"lacks 1 run.*finetune des-to-hits shots=5 split=2"):
        compute(gone, ["des", "hits"], [("des", "hits"), ("hits", "des")], ["finetune", "mme"], [1, 5])


def test_selection_regret_is_the_selected_runs_against_the_best_lambda_in_hindsight():
    """Two groups, lambdas 0.1 and 1: lambda 1 is better on the test parts (0.80, 0.90 against 0.70, 0.70);
    selection picked 0.1 in group (1, 0) and 1 in group (1, 1): regret = mean(0.70, 0.90) - mean(0.80, 0.90)."""
    test = {(0, 0.1): 0.70, (0, 1.0): 0.80, (1, 0.1): 0.70, (1, 1.0): 0.90}
    dicts = [adapted_run("mme", "des", "hits", k, 1, 0.9, bacc, lam=lam) for (k, lam), bacc in test.items()]
    for k, lam in ((0, 0.1), (1, 1.0)):
        chosen = adapted_run("mme", "des", "hits", k, 1, 0.9, test[k, lam], lam=lam)
        chosen["selection"] = {"rule": "per_split", "chosen_lambda": lam, "candidates": [{"lambda": lam, "val_bacc": 0.9}]}
        dicts.append(chosen)
    regret = tables.selection_regret(tables.tidy_evaluations(runs_from(dicts)))
    row = regret.iloc[0]
    assert (row["pair"], row["method"], row["hindsight_lambda"], row["n_groups"]) == ("des-to-hits", "mme", "1", 2)
    assert row["regret"] == pytest.approx(0.80 - 0.85)
