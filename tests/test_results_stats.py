"""Statistics on hand-made numbers: Welch, Wilcoxon against scipy; Holm; degenerate cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from rbda.results.stats import (adjust_within_families, compare_mme_with_finetune,
                                compare_with_baseline, holm, smallest_wilcoxon_p, welch_test,
                                wilcoxon_paired)

A = [0.91, 0.93, 0.90, 0.95, 0.92, 0.94, 0.96]
B = [0.88, 0.90, 0.91, 0.89, 0.87, 0.92, 0.90]


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_matches_scipy(alternative):
    outcome = welch_test(A, B, alternative)
    reference = st.ttest_ind(A, B, equal_var=False, alternative=alternative)
    assert outcome.p == pytest.approx(reference.pvalue, rel=1e-12)
    assert outcome.statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert outcome.mean_diff == pytest.approx(np.mean(A) - np.mean(B))
    assert outcome.note == ""


def test_welch_interval_is_two_sided_satterthwaite_even_for_one_sided_test():
    a, b = np.array(A), np.array(B)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = st.t.ppf(0.975, df) * math.sqrt(va + vb)
    outcome = welch_test(A, B, "greater")
    diff = a.mean() - b.mean()
    assert (outcome.ci_low, outcome.ci_high) == pytest.approx((diff - half, diff + half), rel=1e-10)


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_wilcoxon_matches_scipy(alternative):
    outcome = wilcoxon_paired(A, B, alternative)
    reference = st.wilcoxon(A, B, alternative=alternative)
    assert outcome.p == pytest.approx(reference.pvalue, rel=1e-12)
    assert outcome.statistic == reference.statistic
    d = np.subtract(A, B)
    interval = st.ttest_1samp(d, 0).confidence_interval(0.95)
    assert (outcome.ci_low, outcome.ci_high) == pytest.approx((interval.low, interval.high))
    assert outcome.mean_diff == pytest.approx(d.mean())
    assert outcome.note == ""  # 7 non-zero pairs: 2/2**7 < 0.05


def test_holm_known_answer_and_nan_left_out():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.01, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04)
    assert math.isnan(adjusted[1])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert np.isnan(holm([math.nan])).all()


def test_holm_applies_within_each_family_only():
    tests = pd.DataFrame({"family": ["x", "x", "y"], "p": [0.02, 0.03, 0.02]})
    out = adjust_within_families(tests)
    assert out["p_holm"].tolist() == pytest.approx([0.04, 0.04, 0.02])
    assert out["significant"].tolist() == [True, True, True]
    assert out["family_size"].tolist() == [2, 2, 1]


def test_welch_fewer_than_two_splits_is_explained():
    outcome = welch_test([0.9], [0.8, 0.85])
    assert math.isnan(outcome.p) and "fewer than 2 splits" in outcome.note
    assert outcome.mean_diff == pytest.approx(0.9 - 0.825)


def test_welch_zero_variance_in_both_groups_is_explained():
    equal = welch_test([0.9, 0.9], [0.9, 0.9])
    assert math.isnan(equal.p) and "constant and equal" in equal.note
    apart = welch_test([0.9, 0.9], [0.8, 0.8])
    assert math.isnan(apart.p) and "zero variance" in apart.note and "+0.1000" in apart.note


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # the scipy reference call
def test_welch_zero_variance_in_one_group_still_tests():
    outcome = welch_test([0.9, 0.9, 0.9], [0.8, 0.82, 0.85])
    assert outcome.p == pytest.approx(st.ttest_ind([0.9] * 3, [0.8, 0.82, 0.85], equal_var=False).pvalue)


def test_wilcoxon_all_zero_differences_is_explained():
    outcome = wilcoxon_paired([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert math.isnan(outcome.p) and "all 3 paired differences are zero" in outcome.note


def test_wilcoxon_zero_differences_dropped_and_small_n_flagged():
    a = [0.9, 0.8, 0.7, 0.6]
    b = [0.9, 0.7, 0.6, 0.5]
    outcome = wilcoxon_paired(a, b, "greater")
    assert outcome.p == pytest.approx(st.wilcoxon(a, b, alternative="greater").pvalue)
    assert "1 zero difference(s) dropped" in outcome.note
    assert "smallest attainable p is 0.125" in outcome.note


def test_smallest_wilcoxon_p():
    assert smallest_wilcoxon_p(2, "two-sided") == 0.5
    assert smallest_wilcoxon_p(5, "two-sided") == pytest.approx(0.0625)
    assert smallest_wilcoxon_p(6, "two-sided") == pytest.approx(0.03125)
    assert smallest_wilcoxon_p(5, "greater") == pytest.approx(0.03125)
    assert smallest_wilcoxon_p(1, "two-sided") == 1.0


def _scores(method, values, domain="target", shots=5):
    return [{"method": method, "source": "des", "target": "hits", "shots": shots, "domain": domain,
             "split": k, "bacc": v} for k, v in enumerate(values)]


def test_mme_vs_finetune_pairs_by_split_and_notes_unpaired():
    scores = pd.DataFrame(_scores("mme", A) + _scores("finetune", B[:5]))
    out = compare_mme_with_finetune(scores)
    welch = out[out["test"] == "welch"].iloc[0]
    wilcoxon = out[out["test"] == "wilcoxon"].iloc[0]
    assert welch["p"] == pytest.approx(st.ttest_ind(A, B[:5], equal_var=False).pvalue)
    assert wilcoxon["p"] == pytest.approx(st.wilcoxon(A[:5], B[:5]).pvalue)
    assert "2 unpaired split(s)" in wilcoxon["note"]
    assert set(out["family"]) == {"mme_vs_finetune/welch", "mme_vs_finetune/wilcoxon"}


def test_method_vs_baseline_is_one_sided_against_the_source_model_on_the_target():
    scores = pd.DataFrame(_scores("finetune", A))
    baseline = pd.DataFrame(
        [{"trained_on": "des", "tested_on": "hits", "split": k, "bacc": v} for k, v in enumerate(B)]
        + [{"trained_on": "des", "tested_on": "des", "split": k, "bacc": 0.99} for k in range(7)])
    out = compare_with_baseline(scores, baseline)
    welch = out[out["test"] == "welch"].iloc[0]
    assert welch["alternative"] == "greater"
    assert welch["p"] == pytest.approx(st.ttest_ind(A, B, equal_var=False, alternative="greater").pvalue)
    assert welch["family"] == "finetune_vs_baseline/welch"


def test_wilcoxon_ties_with_many_pairs_say_normal_approximation():
    d = [0.01] * 8 + [0.02] * 8
    b = [0.5] * 16
    a = [x + y for x, y in zip(b, d)]
    outcome = wilcoxon_paired(a, b)
    assert outcome.p == pytest.approx(st.wilcoxon(a, b).pvalue)
    assert "normal approximation" in outcome.note
    few = wilcoxon_paired(a[:6], b[:6])
    assert "normal approximation" not in few.note
