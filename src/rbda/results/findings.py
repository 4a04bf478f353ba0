"""The study's findings as computed verdicts, each with the test behind it.

Three findings of the study (docs/method.md; issue 11 item 5), evaluated on any set of runs:

(a) **the diagonal beats the off-diagonal in each row** of the baseline table: per survey the
    model trained on it scores higher on its own test part than on each other survey's
    (one-sided paired t-test by split, own - other > 0: the same baseline run is tested on
    both; Holm within the row's comparisons);
(b) **each adaptation method beats the baseline on the target within k shots** per pair
    (k = the largest configured shot count): the smallest shot count whose one-sided paired
    test against the baseline is significant after Holm (``stats/vs_baseline.csv``'s target
    rows, family: the pair's shot counts);
(c) **FT loses source BACC and MME does not**, per pair: "FT loses" holds when FT's source
    BACC is significantly below the baseline's at some shot count (one-sided paired t-test by
    split, method - baseline < 0, Holm over the shot counts). "MME does not lose" is a
    *non-inferiority* claim, so a non-significant loss is not evidence for it: it holds when at
    every shot count MME's source BACC is significantly above the baseline's minus
    :data:`SOURCE_MARGIN` (one-sided paired t-test of method - baseline + margin > 0, Holm over
    the shot counts); it does not hold when a loss is significant at some shot count; otherwise
    it is ``inconclusive`` (too few splits or too much spread to tell). Each half is reported,
    then the joint verdict; the other methods get the same "loses source BACC" row.

A verdict is ``holds``, ``does not hold``, ``inconclusive`` or ``not testable`` (no test could
be computed: one split, missing runs; the evidence says why). The verdicts rest on the
paired t-test (Welch's where runs share no split, :data:`rbda.results.stats.PRIMARY_TESTS`);
the evidence also gives the Wilcoxon signed-rank test's Holm-adjusted p and the notes of
:mod:`rbda.results.stats` (for example when a test cannot reach alpha by construction).
"""

from __future__ import annotations

import math

import pandas as pd

from rbda.results import stats
from rbda.results.naming import method_label, pair_label, survey_label

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE)

#: Finding (c): a source-BACC loss smaller than this (BACC units) counts as no loss; "MME does
#: not lose source BACC" must show MME's source BACC above the baseline's minus this margin.
SOURCE_MARGIN = 0.01

COLUMNS = ["finding", "claim", "scope", "method", "verdict", "test", "evidence"]

#: Source-domain alternative of finding (c): does the method lower the source BACC?
SOURCE_LOSS = {"source": "less"}


def _fmt_p(p: float) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3g}"


def _evidence(primary: pd.Series, wilcoxon: pd.Series | None, label: str) -> str:
    """``DES: +0.250 [0.200, 0.300], p 0.001, p_holm 0.003 (Wilcoxon p_holm 0.25)``, or the note."""
    if math.isnan(primary["p"]):
        return f"{label}: no test ({primary['note']})"
    interval = ("" if math.isnan(primary["ci_low"]) else f" [{primary['ci_low']:+.3f}, {primary['ci_high']:+.3f}]")
    text = (f"{label}: {primary['mean_diff']:+.3f}{interval}, n={int(primary['n_a'])}, "
            f"p {_fmt_p(primary['p'])}, p_holm {_fmt_p(primary['p_holm'])}")
    if wilcoxon is not None:
        text += f" (Wilcoxon p_holm {_fmt_p(wilcoxon['p_holm'])}"
        text += f"; {wilcoxon['note']})" if wilcoxon["note"] else ")"
    return text


def _split_tests(tests: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (tests[tests["test"].isin(stats.PRIMARY_TESTS)], tests[tests["test"] == "wilcoxon"])


def _significant(row: pd.Series) -> bool:
    return bool(row["significant"]) if not pd.isna(row["significant"]) else False


# --- (a) the diagonal ---------------------------------------------------------------------


def diagonal_tests(baseline_runs: pd.DataFrame, surveys: list[str]) -> pd.DataFrame:
    """Per survey (row) and other survey: own-survey BACC - other-survey BACC of the same baseline
    runs, one-sided (greater), paired by split; Holm within (row, test).

    ``baseline_runs``: columns trained_on, tested_on, split, bacc (:func:`tables.baseline_scores`).
    """
    rows = []
    for own in surveys:
        trained = baseline_runs[baseline_runs["trained_on"] == own]
        home = trained[trained["tested_on"] == own].set_index("split")["bacc"]
        for other in surveys:
            if other == own:
                continue
            away = trained[trained["tested_on"] == other].set_index("split")["bacc"]
            for row in stats.compare(home, away, "greater"):
                rows.append({"trained_on": own, "tested_on": other, "comparison": "own - other",
                             "family": f"{own}/diagonal/{row['test']}", **row})
    frame = pd.DataFrame(rows)
    return stats.adjust_within_families(frame) if len(frame) else frame


def _all_of(flags: list[bool | None]) -> str:
    """Verdict of a conjunction of tested claims (None = not testable)."""
    if any(f is False for f in flags):
        return FAILS
    if not flags or any(f is None for f in flags):
        return NOT_TESTABLE
    return HOLDS


def diagonal_findings(tests: pd.DataFrame, surveys: list[str]) -> list[dict]:
    rows = []
    for own in surveys:
        mine = tests[tests["trained_on"] == own] if len(tests) else tests
        primary, wilcoxon = _split_tests(mine)
        flags, evidence = [], []
        for _, t in primary.iterrows():
            w = wilcoxon[wilcoxon["tested_on"] == t["tested_on"]]
            flags.append(None if math.isnan(t["p"]) else _significant(t))
            evidence.append(_evidence(t, w.iloc[0] if len(w) else None, f"vs {survey_label(t['tested_on'])}"))
        rows.append({"finding": "a",
                     "claim": f"the model trained on {survey_label(own)} scores higher on {survey_label(own)} "
                              "than on every other survey (the diagonal beats its row)",
                     "scope": f"trained on {survey_label(own)}", "method": "baseline",
                     "verdict": _all_of(flags),
                     "test": f"one-sided paired t-test by split (own − other > 0), Holm over the row's "
                             f"{len(primary)} comparison(s)",
                     "evidence": "; ".join(evidence) or "no baseline runs"})
    return rows


# --- (b) beating the baseline within k shots ------------------------------------------------


def beat_baseline_findings(versus_baseline: pd.DataFrame, methods: list[str], pairs: list[tuple[str, str]],
                           k: int) -> list[dict]:
    """Per pair and method: does some shot count <= k beat the baseline on the target
    significantly (one-sided paired test, Holm over the pair's shot counts)?"""
    target = versus_baseline[versus_baseline["domain"] == "target"]
    primary, wilcoxon = _split_tests(target)
    rows = []
    for source, target_survey in pairs:
        for method in methods:
            mine = primary[(primary["source"] == source) & (primary["target"] == target_survey)
                           & (primary["method"] == method)].sort_values("shots")
            within = mine[mine["shots"] <= k]
            wins = within[within["significant"].fillna(False).astype(bool) & (within["mean_diff"] > 0)]
            if len(wins):
                first = wins.iloc[0]
                verdict = HOLDS
                w = wilcoxon[(wilcoxon["source"] == source) & (wilcoxon["target"] == target_survey)
                             & (wilcoxon["method"] == method) & (wilcoxon["shots"] == first["shots"])]
                evidence = _evidence(first, w.iloc[0] if len(w) else None,
                                     f"significant from {int(first['shots'])} shots")
            elif within["p"].notna().any():
                verdict = FAILS
                best = within.loc[within["p_holm"].idxmin()] if within["p_holm"].notna().any() else within.iloc[0]
                evidence = (f"no shot count <= {k} significant (tested: "
                            f"{' '.join(str(int(n)) for n in within['shots'])}); smallest p_holm at "
                            + _evidence(best, None, f"{int(best['shots'])} shots"))
            else:
                verdict = NOT_TESTABLE
                evidence = ("no runs of this method for the pair" if within.empty else
                            "; ".join(sorted(set(within["note"].dropna()))))
            rows.append({"finding": "b",
                         "claim": f"{method_label(method)} beats the baseline on the target within {k} shots",
                         "scope": pair_label(source, target_survey), "method": method, "verdict": verdict,
                         "test": "one-sided paired t-test by split (method − baseline > 0), Holm over the pair's "
                                 "shot counts; the smallest significant shot count",
                         "evidence": evidence})
    return rows


# --- (c) source BACC lost --------------------------------------------------------------------


def source_loss_tests(scores: pd.DataFrame, baseline_runs: pd.DataFrame) -> pd.DataFrame:
    """Method - baseline on the source, one-sided (less), paired by split, Holm within
    (pair, method, test) over the shot counts."""
    return stats.compare_with_baseline(scores[scores["domain"] == "source"], baseline_runs, SOURCE_LOSS)


def non_inferiority_tests(scores: pd.DataFrame, baseline_runs: pd.DataFrame,
                          margin: float = SOURCE_MARGIN) -> pd.DataFrame:
    """Method - baseline + ``margin`` on the source, one-sided (greater), paired by split, Holm
    within (pair, method, test) over the shot counts: is the method's source BACC above the
    baseline's minus the margin?"""
    source = scores[scores["domain"] == "source"].copy()
    source["bacc"] = source["bacc"] + margin
    return stats.compare_with_baseline(source, baseline_runs, {"source": "greater"})


def _not_inferior(tests: pd.DataFrame, source: str, target: str, method: str) -> tuple[bool | None, str]:
    """(True: non-inferior at every shot count, False: not shown at some, None: untestable; evidence)."""
    primary, _ = _split_tests(tests)
    mine = primary[(primary["source"] == source) & (primary["target"] == target)
                   & (primary["method"] == method)].sort_values("shots")
    if mine.empty or not mine["p"].notna().any():
        return None, "no test" if mine.empty else "; ".join(sorted(set(mine["note"].dropna())))
    shown = mine["significant"].fillna(False).astype(bool)
    worst = mine.loc[mine["p_holm"].fillna(1.0).idxmax()]
    evidence = _evidence(worst, None, f"weakest at {int(worst['shots'])} shots (difference + margin)")
    if shown.all():
        return True, f"above the baseline minus {SOURCE_MARGIN} at every shot count; " + evidence
    missing = " ".join(str(int(n)) for n, ok in zip(mine["shots"], shown) if not ok)
    return False, f"not shown at {missing} shots; " + evidence


def _loses(tests: pd.DataFrame, source: str, target: str, method: str) -> tuple[bool | None, str]:
    """(True: significantly below at some shot count, False: tested and never, None: untestable;
    the evidence)."""
    primary, wilcoxon = _split_tests(tests)
    mine = primary[(primary["source"] == source) & (primary["target"] == target)
                   & (primary["method"] == method)].sort_values("shots")
    if mine.empty:
        return None, "no runs of this method for the pair"
    if not mine["p"].notna().any():
        return None, "; ".join(sorted(set(mine["note"].dropna())))
    below = mine[mine["significant"].fillna(False).astype(bool) & (mine["mean_diff"] < 0)]
    untested = [str(int(n)) for n, p in zip(mine["shots"], mine["p"]) if math.isnan(p)]
    tail = f"; not testable at {' '.join(untested)} shots" if untested else ""
    if len(below):
        first = below.iloc[0]
        w = wilcoxon[(wilcoxon["source"] == source) & (wilcoxon["target"] == target)
                     & (wilcoxon["method"] == method) & (wilcoxon["shots"] == first["shots"])]
        shots = " ".join(str(int(n)) for n in below["shots"])
        return True, (f"significantly below at {shots} shots; "
                      + _evidence(first, w.iloc[0] if len(w) else None, f"{int(first['shots'])} shots") + tail)
    best = mine.loc[mine["p_holm"].idxmin()]
    return False, ("not significantly below at any tested shot count; smallest p_holm at "
                   + _evidence(best, None, f"{int(best['shots'])} shots") + tail)


SOURCE_TEST = ("one-sided paired t-test by split (method − baseline < 0 on the source's test part), "
               "Holm over the pair's shot counts")


def source_findings(tests: pd.DataFrame, non_inferiority: pd.DataFrame, methods: list[str],
                    pairs: list[tuple[str, str]]) -> list[dict]:
    rows = []
    for source, target in pairs:
        scope = pair_label(source, target)
        result = {method: _loses(tests, source, target, method) for method in methods}
        halves = {}
        # FT loses source BACC: a significant loss at some shot count
        if "finetune" in methods:
            flag, evidence = result["finetune"]
        else:
            flag, evidence = None, "finetune is not among the configured methods"
        halves["finetune"] = None if flag is None else HOLDS if flag else FAILS
        rows.append({"finding": "c", "claim": "FT loses source BACC (significantly below the baseline at some "
                     "shot count)", "scope": scope, "method": "finetune", "verdict": _word(flag),
                     "test": SOURCE_TEST, "evidence": evidence})
        # MME does not lose source BACC: non-inferiority at every shot count
        if "mme" not in methods:
            verdict, evidence = NOT_TESTABLE, "mme is not among the configured methods"
        else:
            loses, loss_evidence = result["mme"]
            shown, ni_evidence = _not_inferior(non_inferiority, source, target, "mme")
            if loses:
                verdict, evidence = FAILS, "a significant loss: " + loss_evidence
            elif shown:
                verdict, evidence = HOLDS, ni_evidence
            elif loses is None and shown is None:
                verdict, evidence = NOT_TESTABLE, loss_evidence
            else:
                verdict, evidence = INCONCLUSIVE, f"no significant loss, but non-inferiority {ni_evidence}"
        halves["mme"] = verdict
        rows.append({"finding": "c", "claim": f"MME does not lose source BACC (above the baseline minus "
                     f"{SOURCE_MARGIN} at every shot count)", "scope": scope, "method": "mme", "verdict": verdict,
                     "test": NON_INFERIORITY_TEST, "evidence": evidence})
        joint = (FAILS if FAILS in halves.values() else HOLDS if all(v == HOLDS for v in halves.values())
                 else NOT_TESTABLE if NOT_TESTABLE in halves.values() else INCONCLUSIVE)
        rows.append({"finding": "c", "claim": "FT loses source BACC and MME does not (joint)", "scope": scope,
                     "method": "finetune, mme", "verdict": joint, "test": "both halves above hold",
                     "evidence": f"FT loses: {halves['finetune'] or NOT_TESTABLE}; MME does not lose: {halves['mme']}"})
        for method in methods:
            if method in ("finetune", "mme"):
                continue
            flag, evidence = result[method]
            rows.append({"finding": "c",
                         "claim": f"{method_label(method)} loses source BACC (significantly below the baseline "
                                  "at some shot count; beside the study's claim)",
                         "scope": scope, "method": method, "verdict": _word(flag),
                         "test": SOURCE_TEST, "evidence": evidence})
    return rows


NON_INFERIORITY_TEST = (f"one-sided paired t-test by split of method − baseline + {SOURCE_MARGIN} > 0 on the "
                        "source's test part (non-inferiority), Holm over the pair's shot counts; a significant "
                        "loss (the test above) refutes it")


def _word(flag: bool | None) -> str:
    return NOT_TESTABLE if flag is None else HOLDS if flag else FAILS


# --- all together -----------------------------------------------------------------------------


def findings_table(baseline_runs: pd.DataFrame, scores: pd.DataFrame, versus_baseline: pd.DataFrame,
                   surveys: list[str], pairs: list[tuple[str, str]], methods: list[str], k: int) -> pd.DataFrame:
    """Every finding's verdict: columns finding, claim, scope, method, verdict, test, evidence."""
    rows = diagonal_findings(diagonal_tests(baseline_runs, surveys), surveys)
    rows += beat_baseline_findings(versus_baseline, methods, pairs, k)
    rows += source_findings(source_loss_tests(scores, baseline_runs),
                            non_inferiority_tests(scores, baseline_runs), methods, pairs)
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(findings: pd.DataFrame) -> pd.DataFrame:
    """How many verdicts of each kind per finding (for the report's overview)."""
    counts = (findings.groupby("finding")["verdict"].value_counts().unstack(fill_value=0)
              .reindex(columns=list(VERDICTS), fill_value=0))
    return counts.reset_index()

