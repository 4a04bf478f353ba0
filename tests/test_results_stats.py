"""Statistics on hand-made numbers: Welch, Wilcoxon against scipy; Holm; degenerate cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from rbda.results.stats import (adjust_within_families, compare_mme_with_finetune,
                                compare_with_baseline, holm, paired_t_test, smallest_wilcoxon_p,
                                welch_test, wilcoxon_paired)

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
    assert set(out["test"]) == {"paired_t", "wilcoxon"}  # they share splits: no Welch
    paired = out[out["test"] == "paired_t"].iloc[0]
    wilcoxon = out[out["test"] == "wilcoxon"].iloc[0]
    assert paired["p"] == pytest.approx(st.ttest_rel(A[:5], B[:5]).pvalue)
    assert wilcoxon["p"] == pytest.approx(st.wilcoxon(A[:5], B[:5]).pvalue)
    assert "2 unpaired split(s)" in wilcoxon["note"] and "2 unpaired split(s)" in paired["note"]
    assert set(out["family"]) == {"des-to-hits/target/mme - finetune/paired_t",
                                  "des-to-hits/target/mme - finetune/wilcoxon"}


def test_groups_without_a_shared_split_use_welch():
    scores = pd.DataFrame(_scores("mme", A[:3]) + [dict(r, split=r["split"] + 10) for r in _scores("finetune", B)])
    out = compare_mme_with_finetune(scores)
    assert list(out["test"]) == ["welch"] and "no shared split" in out.iloc[0]["note"]
    assert out.iloc[0]["p"] == pytest.approx(st.ttest_ind(A[:3], B, equal_var=False).pvalue)


def _baseline_rows(on_target, on_source):
    return pd.DataFrame(
        [{"trained_on": "des", "tested_on": "hits", "split": k, "bacc": v} for k, v in enumerate(on_target)]
        + [{"trained_on": "des", "tested_on": "des", "split": k, "bacc": v} for k, v in enumerate(on_source)])


def test_method_vs_baseline_is_paired_one_sided_on_the_target_and_two_sided_on_the_source():
    scores = pd.DataFrame(_scores("finetune", A) + _scores("finetune", B, domain="source"))
    out = compare_with_baseline(scores, _baseline_rows(B, A))
    target = out[(out["test"] == "paired_t") & (out["domain"] == "target")].iloc[0]
    assert target["alternative"] == "greater"
    assert target["p"] == pytest.approx(st.ttest_rel(A, B, alternative="greater").pvalue)
    assert target["family"] == "des-to-hits/target/finetune - baseline/paired_t"
    source = out[(out["test"] == "paired_t") & (out["domain"] == "source")].iloc[0]
    assert source["alternative"] == "two-sided" and source["mean_diff"] < 0  # FT lost source BACC
    assert source["p"] == pytest.approx(st.ttest_rel(B, A).pvalue)
    interval = st.ttest_1samp(np.subtract(B, A), 0).confidence_interval(0.95)
    assert (source["ci_low"], source["ci_high"]) == pytest.approx((interval.low, interval.high))


def _study(effect, splits=10, shots=(1, 5, 10, 20, 40), seed=0):
    """FT scores = baseline + ``effect`` + noise on the target, per split; baseline noisy per split."""
    rng = np.random.default_rng(seed)
    base = 0.7 + rng.normal(0, 0.03, splits)
    rows = []
    for n in shots:
        values = base + effect + rng.normal(0, 0.01, splits)
        rows += _scores("finetune", values, shots=n)
    return pd.DataFrame(rows), _baseline_rows(base, [0.95] * splits)


def test_a_constant_effect_in_every_split_is_significant_under_both_paired_tests():
    scores, baseline = _study(0.2)
    out = compare_with_baseline(scores, baseline)
    for test in ("paired_t", "wilcoxon"):
        rows = out[out["test"] == test]
        assert len(rows) == 5 and rows["family_size"].eq(5).all()
        assert rows["significant"].all(), rows[["p", "p_holm", "note"]]
        assert (rows["p_holm"] >= rows["p"]).all()


def test_no_effect_is_not_significant():
    scores, baseline = _study(0.0, seed=1)
    out = compare_with_baseline(scores, baseline)
    assert not out["significant"].any()


def test_a_test_that_cannot_reach_alpha_after_holm_says_so():
    scores, baseline = _study(0.2, splits=6)  # two-sided floor 1/32, one-sided 1/64; x 5 shot counts
    out = compare_with_baseline(scores, baseline)
    wilcoxon = out[out["test"] == "wilcoxon"]
    assert wilcoxon["p_floor"].eq(1 / 64).all()
    assert wilcoxon["note"].str.contains("cannot reach p_holm < 0.05 by construction").all()
    assert not wilcoxon["significant"].any()
    assert out[out["test"] == "paired_t"]["significant"].all()  # the t-test has no such floor
    ten = compare_with_baseline(*_study(0.2))
    assert not ten["note"].str.contains("by construction").any()


def test_wilcoxon_ties_with_many_pairs_say_normal_approximation():
    d = [0.01] * 8 + [0.02] * 8
    b = [0.5] * 16
    a = [x + y for x, y in zip(b, d)]
    outcome = wilcoxon_paired(a, b)
    assert outcome.p == pytest.approx(st.wilcoxon(a, b).pvalue)
    assert "normal approximation" in outcome.note
    few = wilcoxon_paired(a[:6], b[:6])
    assert "normal approximation" not in few.note


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_paired_t_matches_scipy(alternative):
    outcome = paired_t_test(A, B, alternative)
    assert outcome.p == pytest.approx(st.ttest_rel(A, B, alternative=alternative).pvalue)
    assert outcome.mean_diff == pytest.approx(np.mean(np.subtract(A, B)))
    assert outcome.ci_low < outcome.mean_diff < outcome.ci_high


def test_paired_t_constant_difference_gets_the_sign_test_p_and_says_so():
    """Zero variance leaves t undefined, but a difference of one sign in every split is evidence:
    the exact sign test's p (0.5**n one-sided), which can reach alpha with enough splits, or not."""
    outcome = paired_t_test([0.9, 0.8, 0.7], [0.7, 0.6, 0.5])
    assert outcome.p == pytest.approx(2 * 0.5**3) and "same in every split" in outcome.note
    assert "sign test" in outcome.note
    ten = paired_t_test([0.9] * 10, [0.65] * 10, "greater")
    assert ten.p == pytest.approx(0.5**10) and ten.p < 0.05
    assert paired_t_test([0.9] * 10, [0.65] * 10, "less").p == 1.0  # the wrong direction never rejects
    assert paired_t_test([0.9] * 4, [0.65] * 4, "greater").p > 0.05  # too few splits cannot reject
    assert math.isnan(paired_t_test([0.9, 0.9], [0.9, 0.9]).p)
    assert "fewer than 2" in paired_t_test([0.9], [0.8]).note
