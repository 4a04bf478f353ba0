"""The study's findings as computed verdicts (rbda.results.findings): each verdict on
constructed runs where it holds, where it does not, and where it cannot be tested."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from results_helpers import adapted_run, baseline_run

from rbda.results import findings, stats, tables
from rbda.results.runs import validate_run

SURVEYS = ["des", "hits"]
PAIRS = [("des", "hits")]
#: Baseline of des on its own test part, per split (the source baseline of des-to-hits).
HOME = (0.95, 0.96, 0.94, 0.95, 0.97)
#: ... and on hits (the target).
AWAY = (0.70, 0.72, 0.69, 0.71, 0.70)


def baselines(home=HOME, away=AWAY, hits_home=0.97, hits_on_des=(0.60, 0.62, 0.61, 0.59, 0.63)):
    out = []
    for k, (h, a) in enumerate(zip(home, away)):
        out.append(baseline_run("des", k, {"des": h, "hits": a}))
        out.append(baseline_run("hits", k, {"hits": hits_home + 0.002 * k, "des": hits_on_des[k]}))
    return out


def adapted(method: str, curve: dict[int, tuple[list[float], list[float]]]) -> list[dict]:
    """``curve``: shots -> (source BACC per split, target BACC per split)."""
    runs = []
    for shots, (on_source, on_target) in curve.items():
        for k, (s, t) in enumerate(zip(on_source, on_target)):
            lam = 0.1 if method in ("mme", "ent") else None
            run = adapted_run(method, "des", "hits", k, shots, s, t, lam=lam)
            if lam is not None:
                run["selection"] = {"rule": "per_pair", "chosen_lambda": lam,
                                    "candidates": [{"lambda": lam, "val_bacc": 0.9}]}
            runs.append(run)
    return runs


def verdicts(dicts: list[dict], methods: list[str], k: int = 20) -> pd.DataFrame:
    runs = [validate_run(d, Path(f"run-{i}.json")) for i, d in enumerate(dicts)]
    evaluations = tables.tidy_evaluations(runs)
    base = tables.baseline_scores(evaluations)
    scores = tables.method_scores(evaluations)
    versus = stats.compare_with_baseline(scores, base)
    return findings.findings_table(base, scores, versus, SURVEYS, PAIRS, methods, k)


def verdict(table: pd.DataFrame, finding: str, method: str, scope: str = "DES→HiTS", claim: str = "") -> str:
    rows = table[(table["finding"] == finding) & (table["method"] == method) & (table["scope"] == scope)
                 & table["claim"].str.contains(claim, regex=False)]
    assert len(rows) == 1, rows
    return rows["verdict"].iloc[0]


#: Split-to-split scatter of the differences (a constant difference has no paired t-test).
JITTER = (0.004, -0.003, 0.006, -0.002, 0.001)


def shifted(values, delta):
    return [v + delta + j for v, j in zip(values, JITTER)]


KEEP = shifted(HOME, 0.001)        # source BACC as the baseline's: not below
LOSE = shifted(HOME, -0.15)        # source BACC far below the baseline's in every split
NO_GAIN = shifted(AWAY, -0.001)    # target BACC as the baseline's
GAIN = [0.90, 0.93, 0.91, 0.92, 0.94]


# --- (a) --------------------------------------------------------------------------------------


def test_diagonal_holds_when_every_row_is_best_at_home():
    table = verdicts(baselines(), [])
    assert verdict(table, "a", "baseline", "trained on DES") == findings.HOLDS
    assert verdict(table, "a", "baseline", "trained on HiTS") == findings.HOLDS
    evidence = table.loc[table["scope"] == "trained on DES", "evidence"].iloc[0]
    assert "vs HiTS: +0.250" in evidence and "p_holm" in evidence and "Wilcoxon" in evidence


def test_diagonal_fails_for_a_row_that_does_better_away():
    table = verdicts(baselines(away=shifted(HOME, 0.02)), [])
    assert verdict(table, "a", "baseline", "trained on DES") == findings.FAILS
    assert verdict(table, "a", "baseline", "trained on HiTS") == findings.HOLDS


def test_diagonal_with_one_split_is_not_testable():
    one = [baseline_run("des", 0, {"des": 0.95, "hits": 0.7}), baseline_run("hits", 0, {"hits": 0.97, "des": 0.6})]
    table = verdicts(one, [])
    assert set(table["verdict"]) == {findings.NOT_TESTABLE}
    assert "fewer than 2 paired splits" in table["evidence"].iloc[0]


# --- (b) --------------------------------------------------------------------------------------


def test_beating_the_baseline_within_k_shots_goes_both_ways():
    ft = adapted("finetune", {1: (KEEP, NO_GAIN), 20: (KEEP, GAIN)})
    mme = adapted("mme", {1: (KEEP, NO_GAIN), 20: (KEEP, NO_GAIN)})
    table = verdicts(baselines() + ft + mme, ["finetune", "mme"], k=20)
    assert verdict(table, "b", "finetune") == findings.HOLDS
    assert "significant from 20 shots" in table[(table.finding == "b") & (table.method == "finetune")]["evidence"].iloc[0]
    assert verdict(table, "b", "mme") == findings.FAILS
    within_one = verdicts(baselines() + ft + mme, ["finetune", "mme"], k=1)
    assert verdict(within_one, "b", "finetune") == findings.FAILS  # the gain comes only after k shots


def test_beating_the_baseline_is_not_testable_with_one_split_or_without_runs():
    ft = adapted("finetune", {5: ([0.95], [0.9])})
    one = [baseline_run("des", 0, {"des": 0.95, "hits": 0.7}), baseline_run("hits", 0, {"hits": 0.97, "des": 0.6})]
    table = verdicts(one + ft, ["finetune", "st"])
    assert verdict(table, "b", "finetune") == findings.NOT_TESTABLE
    assert verdict(table, "b", "st") == findings.NOT_TESTABLE
    assert table[(table.finding == "b") & (table.method == "st")]["evidence"].iloc[0] == \
        "no runs of this method for the pair"


# --- (c) --------------------------------------------------------------------------------------


def test_ft_loses_source_and_mme_does_not_holds():
    ft = adapted("finetune", {1: (LOSE, GAIN), 20: (LOSE, GAIN)})
    mme = adapted("mme", {1: (KEEP, GAIN), 20: (KEEP, GAIN)})
    table = verdicts(baselines() + ft + mme, ["finetune", "mme"])
    assert verdict(table, "c", "finetune") == findings.HOLDS
    assert verdict(table, "c", "mme") == findings.HOLDS
    assert verdict(table, "c", "finetune, mme") == findings.HOLDS


def test_ft_keeping_its_source_fails_the_first_half_and_the_joint_claim():
    ft = adapted("finetune", {1: (KEEP, GAIN), 20: (KEEP, GAIN)})
    mme = adapted("mme", {1: (KEEP, GAIN), 20: (KEEP, GAIN)})
    table = verdicts(baselines() + ft + mme, ["finetune", "mme"])
    assert verdict(table, "c", "finetune") == findings.FAILS
    assert verdict(table, "c", "mme") == findings.HOLDS
    assert verdict(table, "c", "finetune, mme") == findings.FAILS


def test_mme_losing_at_one_shot_count_fails_the_second_half():
    ft = adapted("finetune", {1: (LOSE, GAIN), 20: (LOSE, GAIN)})
    mme = adapted("mme", {1: (KEEP, GAIN), 20: (LOSE, GAIN)})
    table = verdicts(baselines() + ft + mme, ["finetune", "mme"])
    assert verdict(table, "c", "finetune") == findings.HOLDS
    assert verdict(table, "c", "mme") == findings.FAILS
    assert "significantly below at 20 shots" in table[(table.finding == "c") & (table.method == "mme")]["evidence"].iloc[0]
    assert verdict(table, "c", "finetune, mme") == findings.FAILS


def test_source_claim_with_more_methods_and_without_mme():
    ft = adapted("finetune", {5: (LOSE, GAIN)})
    st = adapted("st", {5: (LOSE, GAIN)})
    ent = adapted("ent", {5: (KEEP, GAIN)})
    table = verdicts(baselines() + ft + st + ent, ["finetune", "st", "ent"])
    assert verdict(table, "c", "st", claim="S+T loses source BACC") == findings.HOLDS
    assert verdict(table, "c", "ent", claim="ENT loses source BACC") == findings.FAILS
    assert verdict(table, "c", "mme") == findings.NOT_TESTABLE  # not configured
    assert verdict(table, "c", "finetune, mme") == findings.NOT_TESTABLE
    assert {verdict(table, "b", m) for m in ("finetune", "st", "ent")} == {findings.HOLDS}


def test_summary_counts_every_verdict():
    ft = adapted("finetune", {1: (LOSE, GAIN)})
    mme = adapted("mme", {1: (KEEP, NO_GAIN)})
    table = verdicts(baselines() + ft + mme, ["finetune", "mme"])
    summary = findings.summary(table).set_index("finding")
    assert list(summary.columns) == list(findings.VERDICTS)
    assert summary.loc["a", findings.HOLDS] == 2
    assert summary.loc["b"].sum() == 2 and summary.loc["c"].sum() == 3


@pytest.mark.parametrize("name", ["HOLDS", "FAILS", "NOT_TESTABLE"])
def test_verdict_words_are_distinct(name):
    assert list(findings.VERDICTS).count(getattr(findings, name)) == 1


def test_mme_not_losing_needs_evidence_of_no_loss_not_just_no_significant_loss():
    """'MME does not lose source BACC' is a non-inferiority claim: a small, noisy, non-significant
    loss is inconclusive (it used to count as 'holds'); a source BACC as the baseline's holds."""
    noisy_small_loss = [h - 0.02 + j for h, j in zip(HOME, (0.03, -0.04, 0.035, -0.03, 0.005))]
    ft = adapted("finetune", {1: (LOSE, GAIN), 20: (LOSE, GAIN)})
    mme = adapted("mme", {1: (noisy_small_loss, GAIN), 20: (noisy_small_loss, GAIN)})
    table = verdicts(baselines() + ft + mme, ["finetune", "mme"])
    assert verdict(table, "c", "mme") == findings.INCONCLUSIVE
    assert verdict(table, "c", "finetune, mme") == findings.INCONCLUSIVE
    kept = verdicts(baselines() + ft + adapted("mme", {1: (KEEP, GAIN), 20: (KEEP, GAIN)}), ["finetune", "mme"])
    assert verdict(kept, "c", "mme") == findings.HOLDS
    assert f"minus {findings.SOURCE_MARGIN}" in kept[(kept.finding == "c") & (kept.method == "mme")]["evidence"].iloc[0]
