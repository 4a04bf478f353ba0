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
(c) **FT loses source BACC and MME does not**, per pair: FT's source BACC significantly below
    the baseline's at some shot count, MME's not significantly below at any (one-sided paired
    t-test by split, method - baseline < 0, Holm over the shot counts); each half is reported,
    then the joint verdict; the other methods get the same "loses source BACC" row.

A verdict is ``holds``, ``does not hold`` or ``not testable`` (no test could be computed:
one split, zero variance, missing runs; the evidence says why). The verdicts rest on the
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
NOT_TESTABLE = "not testable"
VERDICTS = (HOLDS, FAILS, NOT_TESTABLE)

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


def source_findings(tests: pd.DataFrame, methods: list[str], pairs: list[tuple[str, str]]) -> list[dict]:
    rows = []
    for source, target in pairs:
        scope = pair_label(source, target)
        result = {}
        for method in methods:
            result[method] = _loses(tests, source, target, method)
        halves = {}
        for method, keep in (("finetune", False), ("mme", True)):
            if method not in methods:
                flag, evidence = None, f"{method} is not among the configured methods"
            else:
                flag, evidence = result[method]
            holds = None if flag is None else (not flag if keep else flag)
            halves[method] = holds
            claim = (f"{method_label(method)} does not lose source BACC (not significantly below the baseline "
                     "at any shot count)" if keep else
                     f"{method_label(method)} loses source BACC (significantly below the baseline at some shot count)")
            rows.append({"finding": "c", "claim": claim, "scope": scope, "method": method,
                         "verdict": NOT_TESTABLE if holds is None else HOLDS if holds else FAILS,
                         "test": SOURCE_TEST, "evidence": evidence})
        rows.append({"finding": "c", "claim": "FT loses source BACC and MME does not (joint)", "scope": scope,
                     "method": "finetune, mme", "verdict": _all_of([halves["finetune"], halves["mme"]]),
                     "test": "both halves above hold",
                     "evidence": f"FT loses: {_word(halves['finetune'])}; MME does not lose: {_word(halves['mme'])}"})
        for method in methods:
            if method in ("finetune", "mme"):
                continue
            flag, evidence = result[method]
            rows.append({"finding": "c",
                         "claim": f"{method_label(method)} loses source BACC (significantly below the baseline "
                                  "at some shot count; beside the study's claim)",
                         "scope": scope, "method": method,
                         "verdict": NOT_TESTABLE if flag is None else HOLDS if flag else FAILS,
                         "test": SOURCE_TEST, "evidence": evidence})
    return rows


def _word(flag: bool | None) -> str:
    return NOT_TESTABLE if flag is None else HOLDS if flag else FAILS


# --- all together -----------------------------------------------------------------------------


def findings_table(baseline_runs: pd.DataFrame, scores: pd.DataFrame, versus_baseline: pd.DataFrame,
                   surveys: list[str], pairs: list[tuple[str, str]], methods: list[str], k: int) -> pd.DataFrame:
    """Every finding's verdict: columns finding, claim, scope, method, verdict, test, evidence."""
    rows = diagonal_findings(diagonal_tests(baseline_runs, surveys), surveys)
    rows += beat_baseline_findings(versus_baseline, methods, pairs, k)
    rows += source_findings(source_loss_tests(scores, baseline_runs), methods, pairs)
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(findings: pd.DataFrame) -> pd.DataFrame:
    """How many verdicts of each kind per finding (for the report's overview)."""
    counts = (findings.groupby("finding")["verdict"].value_counts().unstack(fill_value=0)
              .reindex(columns=list(VERDICTS), fill_value=0))
    return counts.reset_index()

