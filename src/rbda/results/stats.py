"""Significance tests over splits: paired t, Wilcoxon signed-rank, Welch, Holm.

Every test returns a :class:`TestOutcome` whose ``note`` says in words why a
p-value is missing or why it cannot be small (too few splits, zero variance,
all differences zero, too few pairs for the Wilcoxon test to reach the level).
A missing p-value is ``nan`` *with* such a note, never silently.

Conventions
-----------
* ``mean_diff`` is ``mean(a) - mean(b)`` for Welch and the mean of the paired
  differences ``a_i - b_i`` for Wilcoxon; positive means ``a`` is better.
* ``ci_low``/``ci_high`` is always the two-sided 95% interval of that
  difference, also for one-sided tests: the Welch (Satterthwaite) interval,
  or for Wilcoxon rows the paired t interval of the differences.
* Holm's step-down adjustment is applied within a *family* of tests; tests
  without a p-value are left out of their family (they do not inflate it).
* Runs that share a split are compared by split (paired t and Wilcoxon
  signed-rank on the common splits): FT and MME run k start from baseline k,
  and MME and FT run k use split k's data. Welch's test is used only when two
  groups share no split. A family is one (pair, domain, comparison, test):
  its members are the shot counts.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

ALPHA = 0.05
CONFIDENCE = 0.95
#: scipy's ``wilcoxon(method="auto")`` with zeros or ties is an exact permutation test up to
#: this many pairs, and a normal approximation above.
EXACT_WITH_TIES_MAX_N = 13


@dataclass(frozen=True)
class TestOutcome:
    test: str
    alternative: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    statistic: float
    p: float
    note: str
    #: The smallest p this test can give with these data (exact Wilcoxon); nan when not bounded.
    p_floor: float = math.nan

    def as_row(self) -> dict:
        return asdict(self)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else math.nan


def _zero_variance(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def _constant_differences(d: np.ndarray) -> bool:
    """Differences equal up to float rounding (0.9 - 0.7 vs 0.8 - 0.6): t is undefined."""
    return bool(np.ptp(d) <= 1e-12)


def welch_test(a, b, alternative: str = "two-sided") -> TestOutcome:
    """Welch's unequal-variance t-test of ``mean(a) - mean(b)`` (scipy.stats.ttest_ind)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    base = dict(test="welch", alternative=alternative, n_a=len(a), n_b=len(b),
                mean_a=_mean(a), mean_b=_mean(b), mean_diff=_mean(a) - _mean(b))
    if len(a) < 2 or len(b) < 2:
        return TestOutcome(**base, ci_low=math.nan, ci_high=math.nan, statistic=math.nan,
                           p=math.nan, note=f"no test: fewer than 2 splits (n={len(a)} vs {len(b)})")
    if _zero_variance(a) and _zero_variance(b):
        same = a[0] == b[0]
        note = ("no test: both groups constant and equal" if same else
                "no test: both groups constant (zero variance), t undefined; "
                f"the difference {a[0] - b[0]:+.4f} is the same in every split")
        return TestOutcome(**base, ci_low=math.nan, ci_high=math.nan, statistic=math.nan,
                           p=math.nan, note=note)
    with warnings.catch_warnings():
        # scipy warns of "catastrophic cancellation" when one group is constant; that
        # group's zero variance is exact here and Welch's test is well defined.
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        result = st.ttest_ind(a, b, equal_var=False, alternative=alternative)
        interval = st.ttest_ind(a, b, equal_var=False).confidence_interval(CONFIDENCE)
    return TestOutcome(**base, ci_low=float(interval.low), ci_high=float(interval.high),
                       statistic=float(result.statistic), p=float(result.pvalue), note="")


def sign_test_p(n: int, positive: bool, alternative: str) -> float:
    """p of the exact sign test when all ``n`` paired differences have one sign (positive or not)."""
    one_sided = 0.5 ** n
    if alternative == "two-sided":
        return min(1.0, 2 * one_sided)
    agrees = positive if alternative == "greater" else not positive
    return one_sided if agrees else 1.0


def smallest_wilcoxon_p(n_nonzero: int, alternative: str) -> float:
    """Smallest p the exact signed-rank test can give with ``n_nonzero`` pairs."""
    one_sided = 0.5 ** n_nonzero
    return one_sided if alternative != "two-sided" else min(1.0, 2 * one_sided)


def paired_t_test(a, b, alternative: str = "two-sided") -> TestOutcome:
    """Paired t-test of the differences ``a_i - b_i`` (scipy.stats.ttest_rel); the
    interval is the two-sided 95% t interval of the mean difference."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    d = a - b
    base = dict(test="paired_t", alternative=alternative, n_a=len(a), n_b=len(b),
                mean_a=_mean(a), mean_b=_mean(b), mean_diff=_mean(d))
    if len(d) < 2:
        return TestOutcome(**base, ci_low=math.nan, ci_high=math.nan, statistic=math.nan, p=math.nan,
                           note=f"no test: fewer than 2 paired splits (n={len(d)})")
    if _constant_differences(d):
        if abs(d[0]) <= 1e-12:
            return TestOutcome(**base, ci_low=math.nan, ci_high=math.nan, statistic=math.nan, p=math.nan,
                               note="no test: all paired differences are zero")
        # t is undefined (zero variance) but the evidence is not nil: every split moves the same
        # way. The exact sign test gives the p of n differences of one sign under H0.
        p = sign_test_p(len(d), positive=d[0] > 0, alternative=alternative)
        return TestOutcome(**base, ci_low=float(d[0]), ci_high=float(d[0]), statistic=math.nan, p=p,
                           note=f"the difference {d[0]:+.4f} is the same in every split (zero variance, t "
                                f"undefined): p from the exact sign test ({len(d)} differences of one sign)")
    low, high = _paired_interval(d)
    result = st.ttest_rel(a, b, alternative=alternative)
    return TestOutcome(**base, ci_low=low, ci_high=high, statistic=float(result.statistic),
                       p=float(result.pvalue), note="")


def _paired_interval(d: np.ndarray) -> tuple[float, float]:
    if len(d) < 2 or _constant_differences(d):
        return math.nan, math.nan
    interval = st.ttest_1samp(d, 0.0).confidence_interval(CONFIDENCE)
    return float(interval.low), float(interval.high)


def wilcoxon_paired(a, b, alternative: str = "two-sided") -> TestOutcome:
    """Wilcoxon signed-rank test of the paired differences ``a_i - b_i``.

    Zero differences are dropped (scipy's ``zero_method="wilcox"``) and the
    note says how many.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    d = a - b
    low, high = _paired_interval(d)
    base = dict(test="wilcoxon", alternative=alternative, n_a=len(a), n_b=len(b),
                mean_a=_mean(a), mean_b=_mean(b), mean_diff=_mean(d), ci_low=low, ci_high=high)
    if len(d) == 0:
        return TestOutcome(**base, statistic=math.nan, p=math.nan, note="no test: no paired splits")
    n_nonzero = int(np.count_nonzero(d))
    if n_nonzero == 0:
        return TestOutcome(**base, statistic=math.nan, p=math.nan,
                           note=f"no test: all {len(d)} paired differences are zero")
    notes = []
    if n_nonzero < len(d):
        notes.append(f"{len(d) - n_nonzero} zero difference(s) dropped")
    magnitudes = np.abs(d[d != 0])
    if len(np.unique(magnitudes)) < len(magnitudes) and len(d) > EXACT_WITH_TIES_MAX_N:
        notes.append("ties among |differences| with more than "
                     f"{EXACT_WITH_TIES_MAX_N} pairs: p from the normal approximation")
    floor = smallest_wilcoxon_p(n_nonzero, alternative)
    if floor >= ALPHA:
        notes.append(f"with {n_nonzero} non-zero pair(s) the smallest attainable p is {floor:.3g}, "
                     f"so p < {ALPHA} is impossible")
    if len(d) < 2 or _zero_variance(d):
        notes.append("no interval: differences constant")
    result = st.wilcoxon(a, b, zero_method="wilcox", alternative=alternative)
    return TestOutcome(**base, statistic=float(result.statistic), p=float(result.pvalue),
                       note="; ".join(notes), p_floor=floor)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values; ``nan`` entries stay ``nan`` and do not count."""
    p = np.asarray(pvalues, float)
    adjusted = np.full_like(p, math.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = len(present)
    if m == 0:
        return adjusted
    order = present[np.argsort(p[present], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def adjust_within_families(tests: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Add ``p_holm`` (Holm within each ``family``), ``family_size`` (the tests with a
    p-value in the family, the Holm multiplier's maximum) and ``significant``."""
    tests = tests.copy()
    tests["p_holm"] = math.nan
    tests["family_size"] = 0
    for _, index in tests.groupby("family", sort=False).groups.items():
        p = tests.loc[index, "p"].to_numpy()
        tests.loc[index, "p_holm"] = holm(p)
        tests.loc[index, "family_size"] = int(np.count_nonzero(~np.isnan(p)))
    tests["significant"] = tests["p_holm"] < alpha
    floors = tests["p_floor"] if "p_floor" in tests.columns else pd.Series(math.nan, index=tests.index)
    for index in tests.index[floors.notna() & tests["p"].notna()]:
        row = tests.loc[index]
        floor = row["p_floor"]
        if floor < alpha <= floor * row["family_size"]:
            extra = (f"cannot reach p_holm < {alpha} by construction: smallest attainable p {floor:.3g} "
                     f"x family size {row['family_size']} >= {alpha}")
            tests.loc[index, "note"] = "; ".join(n for n in (row["note"], extra) if n)
    return tests


# --- the study's comparisons ------------------------------------------------

#: The test a verdict rests on: the paired t-test where runs share splits, Welch's otherwise.
PRIMARY_TESTS = ("paired_t", "welch")


def _paired_by_split(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, str]:
    """Values of two split-indexed series on their common splits, and a note on any left out."""
    common = a.index.intersection(b.index).sort_values()
    left_out = len(a) + len(b) - 2 * len(common)
    note = f"{left_out} unpaired split(s) left out of the paired test" if left_out else ""
    return a.loc[common].to_numpy(), b.loc[common].to_numpy(), note


def compare(a: pd.Series, b: pd.Series, alternative: str) -> list[dict]:
    """Paired t and Wilcoxon on the splits both have; Welch when they share none."""
    pa, pb, pairing_note = _paired_by_split(a, b)
    if len(pa) == 0:
        welch = welch_test(a.to_numpy(), b.to_numpy(), alternative).as_row()
        welch["note"] = "; ".join(n for n in ("no shared split: unpaired test", welch["note"]) if n)
        return [welch]
    rows = [paired_t_test(pa, pb, alternative).as_row(), wilcoxon_paired(pa, pb, alternative).as_row()]
    for row in rows:
        row["note"] = "; ".join(n for n in (pairing_note, row["note"]) if n)
    return rows


def _family(source: str, target: str, domain: str, comparison: str, test: str) -> str:
    return f"{source}-to-{target}/{domain}/{comparison}/{test}"


def compare_methods(scores: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Method ``a`` vs method ``b`` per (pair, shots, domain), two-sided, paired by split.

    ``scores``: columns method, source, target, shots, domain, split, bacc.
    ``mean_diff`` > 0 means ``a`` is better. Families: (pair, domain, comparison, test),
    the comparison being ``"a - b"``; columns ``method_a``, ``method_b`` name the two.
    """
    rows = []
    keys = ["source", "target", "shots", "domain"]
    comparison = f"{a} - {b}"
    for key, group in scores.groupby(keys, sort=False):
        source, target, _, domain = key
        by_method = {m: g.set_index("split")["bacc"] for m, g in group.groupby("method")}
        if a not in by_method or b not in by_method:
            continue
        for row in compare(by_method[a], by_method[b], "two-sided"):
            rows.append({**dict(zip(keys, key)), "method_a": a, "method_b": b, "comparison": comparison,
                         "family": _family(source, target, domain, comparison, row["test"]), **row})
    return _finish(rows, keys + ["method_a", "method_b"])


def compare_method_pairs(scores: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """:func:`compare_methods` for every ``(a, b)`` of ``pairs``, in one frame (each comparison
    its own Holm families, as if run alone)."""
    frames = [compare_methods(scores, a, b) for a, b in pairs]
    frames = [f for f in frames if len(f)]
    if not frames:
        return compare_methods(scores.iloc[0:0], "a", "b")
    return pd.concat(frames, ignore_index=True)


def compare_mme_with_finetune(scores: pd.DataFrame) -> pd.DataFrame:
    """The study's headline comparison: MME - FT (:func:`compare_methods`)."""
    return compare_methods(scores, "mme", "finetune")


#: The alternative of "method - baseline" per domain: on the target the claim is that adaptation
#: helps (one-sided); on the source the question is whether it changes (two-sided).
BASELINE_ALTERNATIVE = {"target": "greater", "source": "two-sided"}


def compare_with_baseline(scores: pd.DataFrame, baseline: pd.DataFrame,
                          alternatives: dict[str, str] | None = None) -> pd.DataFrame:
    """Each method vs the source baseline, on the target (one-sided, method better) and on
    the source (two-sided), paired by split (run k starts from baseline k).

    ``baseline``: columns trained_on, tested_on, split, bacc. On the target the
    baseline is the source model on the target's test part; on the source, on
    the source's. Families: (pair, domain, comparison, test).

    ``alternatives``: the alternative per domain (default :data:`BASELINE_ALTERNATIVE`); a
    domain missing from it is not tested. A non-default alternative is part of the comparison's
    name (``"finetune - baseline (less)"``), so its families stay apart.
    """
    alternatives = BASELINE_ALTERNATIVE if alternatives is None else alternatives
    rows = []
    keys = ["method", "source", "target", "shots", "domain"]
    for key, group in scores.groupby(keys, sort=False):
        method, source, target, _, domain = key
        if domain not in alternatives:
            continue
        tested_on = target if domain == "target" else source
        reference = baseline[(baseline["trained_on"] == source) & (baseline["tested_on"] == tested_on)]
        alternative = alternatives[domain]
        comparison = f"{method} - baseline"
        if alternative != BASELINE_ALTERNATIVE.get(domain):
            comparison += f" ({alternative})"
        for row in compare(group.set_index("split")["bacc"], reference.set_index("split")["bacc"],
                           alternative):
            rows.append({**dict(zip(keys, key)), "comparison": comparison,
                         "family": _family(source, target, domain, comparison, row["test"]), **row})
    return _finish(rows, keys)


def _finish(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    columns = keys + ["domain", "comparison", "family"] + list(TestOutcome.__dataclass_fields__)
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(columns)))
    if frame.empty:
        return frame.assign(p_holm=pd.Series(dtype=float), family_size=pd.Series(dtype=int),
                            significant=pd.Series(dtype=bool))
    return adjust_within_families(frame)


# --- tests that respect overlapping splits ----------------------------------------------------

#: The study's split design (rbda.ingest.splits.PART_FRACTIONS): test part / train part, the
#: n_test / n_train of the corrected resampled t-test when the runs do not record their counts.
DESIGN_TEST_TRAIN_RATIO = 0.1 / 0.8


@dataclass(frozen=True)
class Interval:
    """The mean of per-split differences with an interval: ``low``/``high`` at ``confidence``
    (two-sided), ``se`` its standard error and ``df`` its degrees of freedom (nan: undefined)."""

    effect: float
    low: float
    high: float
    se: float
    df: float
    n: int


def corrected_interval(d, test_train_ratio: float, confidence: float = CONFIDENCE) -> Interval:
    """The corrected resampled t interval of the mean of per-split differences ``d``
    (Nadeau and Bengio 2003): the splits are resamplings of one pool, their training and test
    parts overlap, so the variance of the mean is ``s^2 (1/k + n_test/n_train)``, not ``s^2 / k``.

    ``test_train_ratio = 0``: the plain paired t interval. With one value the interval is
    undefined (nan); with constant differences it is that value (zero variance).
    """
    d = np.asarray(d, float)
    k = len(d)
    if k == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(np.mean(d))
    if k < 2:
        return Interval(mean, math.nan, math.nan, math.nan, math.nan, k)
    variance = 0.0 if _constant_differences(d) else float(np.var(d, ddof=1))
    se = math.sqrt(variance * (1.0 / k + test_train_ratio))
    half = float(st.t.ppf(0.5 + confidence / 2, k - 1)) * se
    return Interval(mean, mean - half, mean + half, se, float(k - 1), k)


def t_p_above(interval: Interval, threshold: float) -> float:
    """One-sided p of H0 ``effect <= threshold`` (the t statistic of ``interval``); nan when undefined."""
    if interval.n < 2 or math.isnan(interval.se):
        return math.nan
    if interval.se == 0:
        return 0.0 if interval.effect > threshold else 1.0
    return float(st.t.sf((interval.effect - threshold) / interval.se, interval.df))


def t_p_below(interval: Interval, threshold: float) -> float:
    """One-sided p of H0 ``effect >= threshold``."""
    if interval.n < 2 or math.isnan(interval.se):
        return math.nan
    if interval.se == 0:
        return 0.0 if interval.effect < threshold else 1.0
    return float(st.t.cdf((interval.effect - threshold) / interval.se, interval.df))


def splits_needed(d, test_train_ratio: float, distance: float, confidence: float = CONFIDENCE,
                  most: int = 1000) -> int | None:
    """The fewest splits whose corrected interval, at the mean and spread of ``d``, would lie
    ``distance`` (> 0) away from the mean on one side, i.e. exclude a boundary that far; ``None``
    when no number of splits of the same pool would (the corrected variance keeps
    ``s^2 n_test/n_train`` however many splits are drawn) or when ``d`` has no spread to scale."""
    d = np.asarray(d, float)
    if len(d) < 2 or distance <= 0:
        return None
    sd = float(np.std(d, ddof=1))
    if sd == 0:
        return None
    k = np.arange(2, most + 1)
    half = st.t.ppf(0.5 + confidence / 2, k - 1) * sd * np.sqrt(1.0 / k + test_train_ratio)
    enough = np.flatnonzero(half < distance)
    return int(k[enough[0]]) if len(enough) else None


def wilcoxon_p_above(d, threshold: float) -> float:
    """Exact-or-approximate Wilcoxon signed-rank p of H0 ``median(d) <= threshold`` (scipy); nan
    when every difference equals the threshold or none is given."""
    shifted = np.asarray(d, float) - threshold
    if len(shifted) == 0 or not np.any(np.abs(shifted) > 1e-12):
        return math.nan
    return float(st.wilcoxon(shifted, zero_method="wilcox", alternative="greater").pvalue)


def wilcoxon_p_below(d, threshold: float) -> float:
    """Wilcoxon signed-rank p of H0 ``median(d) >= threshold``."""
    shifted = np.asarray(d, float) - threshold
    if len(shifted) == 0 or not np.any(np.abs(shifted) > 1e-12):
        return math.nan
    return float(st.wilcoxon(shifted, zero_method="wilcox", alternative="less").pvalue)
