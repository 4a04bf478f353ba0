"""The paper's claims as verdicts (rbda.results.findings) on studies whose true effects are known:
run JSONs generated with planted effects over 10 splits. An effect in the claimed direction gives
``holds``, an effect on the claim's boundary (no effect beyond the margin) gives ``inconclusive``
(``holds`` at most at the nominal rate over many draws), an effect against the claim gives
``contradicted``; too few splits give ``not testable``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from results_helpers import adapted_run, baseline_run

from rbda.results import findings, stats, tables
from rbda.results.runs import validate_run
from rbda.study import ordered_pairs

SURVEYS = ["des", "hits", "ztf"]
PAIRS = ordered_pairs(SURVEYS)
SHOTS = [1, 5, 10]
METHODS = ["finetune", "mme"]


@dataclass(frozen=True)
class Planted:
    """True effects of a generated study (BACC units) and the noise of each BACC around them."""

    home: float = 0.95          # baseline on its own survey
    away: float = 0.70          # baseline on every other survey
    ft_gain: float = 0.10       # FT - baseline on the target, every shot count
    mme_gain: float = 0.10      # MME - baseline on the target
    ft_source: float = -0.10    # FT - baseline on the source
    mme_source: float = 0.0     # MME - baseline on the source
    noise: float = 0.005


IN_THE_CLAIMED_DIRECTION = Planted()
#: Every claim's effect on its boundary: no effect beyond the margin either way.
ON_THE_BOUNDARY = Planted(home=0.80, away=0.80, ft_gain=0.0, mme_gain=0.0, ft_source=-findings.SOURCE_MARGIN,
                          mme_source=-findings.SOURCE_MARGIN)
#: ... and for claim 3 (FT and MME comparable within the margin), MME - FT on the margin.
EQUIVALENCE_BOUNDARY = replace(ON_THE_BOUNDARY, mme_gain=findings.EQUIVALENCE_MARGIN)
AGAINST = Planted(home=0.70, away=0.85, ft_gain=-0.10, mme_gain=-0.05, ft_source=0.02, mme_source=-0.10)


def generate(planted: Planted, splits: int = 10, seed: int = 0, surveys: list[str] = SURVEYS,
             shots: list[int] = SHOTS) -> list[dict]:
    """Run JSONs (baseline, finetune, mme-selected) of a study of ``surveys`` with ``planted`` effects."""
    rng = np.random.default_rng(seed)
    noise = lambda: float(rng.normal(0, planted.noise))  # noqa: E731
    runs, base = [], {}
    for source in surveys:
        for k in range(splits):
            baccs = {s: (planted.home if s == source else planted.away) + noise() for s in surveys}
            base[source, k] = baccs
            runs.append(baseline_run(source, k, baccs))
    for source, target in ordered_pairs(surveys):
        for n in shots:
            for k in range(splits):
                on_source, on_target = base[source, k][source], base[source, k][target]
                runs.append(adapted_run("finetune", source, target, k, n, on_source + planted.ft_source + noise(),
                                        on_target + planted.ft_gain + noise()))
                mme = adapted_run("mme", source, target, k, n, on_source + planted.mme_source + noise(),
                                  on_target + planted.mme_gain + noise(), lam=0.1)
                mme["selection"] = {"rule": "per_split", "chosen_lambda": 0.1,
                                    "candidates": [{"lambda": 0.1, "val_bacc": 0.9}]}
                runs.append(mme)
    return runs


def verdicts_of(dicts: list[dict], methods=METHODS, **kwargs) -> pd.DataFrame:
    runs = [validate_run(d, Path(f"run-{i}.json")) for i, d in enumerate(dicts)]
    evaluations = tables.tidy_evaluations(runs)
    return findings.findings_table(tables.baseline_scores(evaluations), tables.method_scores(evaluations), SURVEYS,
                                   PAIRS, list(methods), SHOTS, findings.split_size_ratios(runs), **kwargs)


def study_verdict(table: pd.DataFrame, finding: str, method: str) -> str:
    rows = table[(table["finding"] == finding) & (table["method"] == method) & (table["scope"] == findings.STUDY)]
    assert len(rows) == 1, rows
    return rows["verdict"].iloc[0]


def scope_verdicts(table: pd.DataFrame, finding: str, method: str) -> set[str]:
    rows = table[(table["finding"] == finding) & (table["method"] == method) & (table["scope"] != findings.STUDY)]
    assert len(rows) > 0
    return set(rows["verdict"])


#: (finding, method) of every claim the generator plants an effect for.
CLAIMS = [("1a", "baseline"), ("1b", "baseline"), ("2", "finetune"), ("2", "mme"), ("3", "mme − finetune"),
          ("4a", "finetune"), ("4b", "mme"), ("4c", "mme − finetune")]


@pytest.fixture(scope="module")
def claimed():
    return verdicts_of(generate(IN_THE_CLAIMED_DIRECTION))


@pytest.fixture(scope="module")
def against():
    return verdicts_of(generate(AGAINST))


@pytest.mark.parametrize("finding, method", CLAIMS)
def test_an_effect_in_the_claimed_direction_holds(claimed, finding, method):
    assert scope_verdicts(claimed, finding, method) == {findings.HOLDS}
    assert study_verdict(claimed, finding, method) == findings.HOLDS


@pytest.mark.parametrize("finding, method", CLAIMS)
def test_an_effect_against_the_claim_is_contradicted(against, finding, method):
    assert scope_verdicts(against, finding, method) == {findings.CONTRADICTED}
    assert study_verdict(against, finding, method) == findings.CONTRADICTED


def test_the_findings_table_has_the_documented_columns_and_the_study_first(claimed):
    assert list(claimed.columns[:14]) == ["finding", "claim", "scope", "method", "direction", "margin", "effect",
                                          "ci_low", "ci_high", "n_splits", "test", "p", "verdict", "evidence"]
    assert set(claimed["verdict"]) <= set(findings.VERDICTS)
    first_scoped = int(np.argmax((claimed["scope"] != findings.STUDY).to_numpy()))
    assert (claimed["scope"].iloc[:first_scoped] == findings.STUDY).all()
    assert (claimed.loc[claimed["scope"] != findings.STUDY, "n_splits"] == 10).all()
    ft = claimed[(claimed["finding"] == "4a") & (claimed["scope"] != findings.STUDY)].iloc[0]
    assert ft["ci_low"] <= ft["effect"] <= ft["ci_high"] < -findings.SOURCE_MARGIN
    assert "corrected resampled t" in ft["test"] and "intersection over 3 shot counts" in ft["family"]


def test_ft_loses_and_mme_keeps_are_one_question_with_one_margin(claimed):
    rows = claimed[claimed["finding"].isin(["4a", "4b"])]
    assert set(rows["margin"]) == {findings.SOURCE_MARGIN}
    assert set(rows.loc[rows["finding"] == "4a", "direction"]) == {f"effect < {-findings.SOURCE_MARGIN:+g}"}
    assert set(rows.loc[rows["finding"] == "4b", "direction"]) == {f"effect > {-findings.SOURCE_MARGIN:+g}"}


def test_a_loss_smaller_than_the_margin_does_not_contradict_non_inferiority():
    """MME loses 0.004 in every split (significantly below the baseline, but within the 0.01 margin):
    non-inferiority holds and "FT-style" loss is contradicted."""
    table = verdicts_of(generate(replace(IN_THE_CLAIMED_DIRECTION, mme_source=-0.004, noise=0.001)))
    assert scope_verdicts(table, "4b", "mme") == {findings.HOLDS}


def test_effects_on_the_boundary_are_inconclusive_and_say_what_would_settle_them():
    table = verdicts_of(generate(ON_THE_BOUNDARY))
    for finding, method in CLAIMS:
        if finding != "3":
            assert findings.HOLDS not in scope_verdicts(table, finding, method) | {study_verdict(table, finding, method)}
    rows = table[(table["finding"] == "2") & (table["verdict"] == findings.INCONCLUSIVE)
                 & (table["scope"] != findings.STUDY)]
    assert len(rows) and rows["evidence"].str.contains("splits").all()
    equivalence = verdicts_of(generate(EQUIVALENCE_BOUNDARY))
    assert findings.HOLDS not in scope_verdicts(equivalence, "3", "mme − finetune")


#: The many-draws test's smaller studies: two surveys (2 pairs), two shot counts.
DRAW_SURVEYS, DRAW_SHOTS = ["des", "hits"], [1, 5]


def test_false_holds_stay_at_most_at_the_nominal_rate_over_many_draws():
    """Claims 2, 3 and 4b with their true effect on the boundary, 40 studies of 10 splits each: a
    claim holds in at most 5% of the (study, pair) verdicts."""
    holds = {("2", "finetune"): 0, ("4b", "mme"): 0, ("3", "mme − finetune"): 0}
    draws = 40
    for seed in range(draws):
        boundary = verdicts_of_frames(ON_THE_BOUNDARY, seed)
        equivalence = verdicts_of_frames(EQUIVALENCE_BOUNDARY, seed)
        for finding, method in holds:
            table = equivalence if finding == "3" else boundary
            rows = table[(table["finding"] == finding) & (table["method"] == method)
                         & (table["scope"] != findings.STUDY)]
            holds[finding, method] += int((rows["verdict"] == findings.HOLDS).sum())
    total = draws * len(ordered_pairs(DRAW_SURVEYS))
    for key, count in holds.items():
        assert count / total <= 0.05, (key, count, total)


def verdicts_of_frames(planted: Planted, seed: int) -> pd.DataFrame:
    """:func:`verdicts_of` on a smaller study without the JSON round trip (the many-draws test)."""
    base_rows, score_rows = [], []
    for d in generate(planted, seed=seed, surveys=DRAW_SURVEYS, shots=DRAW_SHOTS):
        for e in d["evaluations"]:
            if d["method"] == "baseline":
                base_rows.append({"trained_on": d["source"], "tested_on": e["survey"], "split": d["split"],
                                  "bacc": e["bacc"]})
            else:
                score_rows.append({"method": d["method"], "source": d["source"], "target": d["target"],
                                   "shots": d["shots"], "domain": e["role"], "split": d["split"], "bacc": e["bacc"]})
    return findings.findings_table(pd.DataFrame(base_rows), pd.DataFrame(score_rows), DRAW_SURVEYS,
                                   ordered_pairs(DRAW_SURVEYS), METHODS, DRAW_SHOTS)


def test_too_few_splits_are_not_testable_but_show_their_effects():
    """The demo's 2 splits, with every effect in the claimed direction: no verdict, never contradicted."""
    table = verdicts_of(generate(IN_THE_CLAIMED_DIRECTION, splits=2))
    assert set(table["verdict"]) == {findings.NOT_TESTABLE}
    assert findings.too_few_splits(table) == 2
    assert table["effect"].notna().all()
    assert table.loc[table["scope"] != findings.STUDY, "evidence"].str.contains("2 splits").all()
    assert findings.too_few_splits(verdicts_of(generate(IN_THE_CLAIMED_DIRECTION, splits=5))) is None


def test_shots_to_beat_compares_the_methods_per_split():
    """FT beats the baseline only from 10 shots, MME from 1: MME needs 2 grid steps fewer in every split."""
    dicts = generate(IN_THE_CLAIMED_DIRECTION)
    for d in dicts:
        if d["method"] == "finetune" and d["shots"] < 10:
            target = next(e for e in d["evaluations"] if e["role"] == "target")
            target["bacc"] -= 0.2
    table = verdicts_of(dicts)
    rows = table[(table["finding"] == "5") & (table["scope"] != findings.STUDY)]
    assert (rows["effect"] == 2).all() and set(rows["verdict"]) == {findings.HOLDS}
    assert scope_verdicts(table, "2", "finetune") == {findings.CONTRADICTED}  # FT at 1 shot is below the baseline


def test_claims_about_a_method_that_is_not_configured_are_not_asked():
    table = verdicts_of(generate(IN_THE_CLAIMED_DIRECTION), methods=["finetune"])
    assert set(table["finding"]) == {"1a", "1b", "2", "4a"}


def test_summary_and_display_cover_every_claim(claimed):
    summary = findings.summary(claimed)
    assert len(summary) == (claimed["scope"] == findings.STUDY).sum()
    assert set(summary["study verdict"]) == {findings.HOLDS, findings.INCONCLUSIVE}  # claim 5: both beat at 1 shot
    assert len(findings.display(claimed)) == len(claimed)


def test_split_size_ratios_come_from_the_baselines_counts():
    dicts = generate(IN_THE_CLAIMED_DIRECTION, splits=2)
    for d in dicts:
        if d["method"] == "baseline":
            d["data"] = {"source_train": 800}
    runs = [validate_run(d, Path(f"run-{i}.json")) for i, d in enumerate(dicts)]
    assert findings.split_size_ratios(runs) == {s: 100 / 800 for s in SURVEYS}


def test_corrected_interval_widens_the_paired_t_interval():
    d = np.array([0.01, 0.03, -0.01, 0.02, 0.00, 0.015, 0.02, 0.005, 0.01, 0.025])
    plain = stats.corrected_interval(d, 0.0)
    expected = st_interval(d)
    assert plain.low == pytest.approx(expected[0]) and plain.high == pytest.approx(expected[1])
    corrected = stats.corrected_interval(d, 0.125)
    ratio = (corrected.high - corrected.low) / (plain.high - plain.low)
    assert ratio == pytest.approx(np.sqrt((1 / 10 + 0.125) / (1 / 10)))


def st_interval(d):
    import scipy.stats as st

    ci = st.ttest_1samp(d, 0.0).confidence_interval(0.95)
    return ci.low, ci.high


def test_splits_needed_is_none_when_more_splits_of_one_pool_cannot_help():
    d = np.array([0.0, 0.02, -0.02, 0.01, -0.01])
    assert stats.splits_needed(d, 0.125, 0.001) is None  # below sd * sqrt(0.125) however many splits
    needed = stats.splits_needed(d, 0.0, 0.005)
    sd = np.std(d, ddof=1)
    half = lambda k: stats.st.t.ppf(0.975, k - 1) * sd / np.sqrt(k)  # noqa: E731
    assert needed is not None and half(needed) < 0.005 <= half(needed - 1)
