"""The paper's claims as computed verdicts, each with its effect, interval, margin and test.

The claims (docs/method.md section 8, "Findings"; ../shared/spec/METHOD.md section 7), each asked
per scope (a survey or a pair) and once for the study as a whole:

1a. **the baseline degrades across surveys, per row**: the model trained on a survey scores higher on
    that survey's test part than on every other survey's (own - other > 0);
1b. **... per test survey (column)**: on a survey's test part, the model trained on it beats every
    model trained elsewhere (same test set, so survey difficulty is out of the comparison);
2.  **each method beats the baseline on the target at 1 shot** (the smallest configured shot count):
    method - baseline > 0 on the target's test part;
3.  **FT and MME are comparable on the target**: |MME - FT| < :data:`EQUIVALENCE_MARGIN` at every shot
    count (equivalence);
4a. **FT degrades the source at every shot count**: FT - baseline < -:data:`SOURCE_MARGIN` on the
    source's test part;
4b. **MME does not** (non-inferiority at every shot count): MME - baseline > -:data:`SOURCE_MARGIN`.
    4a and 4b are one question (is the method's source BACC below the baseline's by more than the
    margin?) asked of two methods, with one margin; the other configured methods get 4b's question;
4c. **MME keeps more source BACC than FT** at every shot count: MME - FT > 0 on the source;
5.  **shots to beat the baseline**: per split, the first shot count whose target BACC beats the
    baseline's; FT's minus MME's, in steps of the shot grid (> 0: MME needs fewer).

One rule decides every verdict from the interval of the effect and the claim's region (``greater``
than a threshold, ``less`` than one, or ``within`` +-margin):

* ``holds``: the 95% interval lies inside the region (every cell of an intersection claim);
* ``contradicted``: the interval lies entirely outside it (for an intersection claim, some cell's
  Bonferroni interval at 1 - alpha/cells does: "at some shot count" is a union);
* ``inconclusive``: neither; the evidence says how many splits would settle it at the observed
  spread, or that more splits of the same pool cannot;
* ``not testable``: fewer than :data:`MIN_SPLITS` splits (said once in the report, not per row).

Per scope the interval is the corrected resampled t interval over splits (Nadeau and Bengio 2003;
:func:`rbda.results.stats.corrected_interval`), because the splits resample one pool; per study it is
a one-sample t interval over the scopes' mean effects. ``p`` is the p-value of the claim's test (an
intersection's: the largest of its cells'; an equivalence's: the larger of its two one-sided tests);
``wilcoxon_p`` the signed-rank test's on the same question, a secondary column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from rbda.results import stats
from rbda.results.naming import method_label, pair_label, survey_label

HOLDS = "holds"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable"
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)

#: The least number of splits a verdict is given on: below it the signed-rank test cannot reach
#: p < 0.05 even one-sided (1/16 with 4 splits) and the corrected t interval has at most 3 degrees
#: of freedom. With fewer, effects and intervals are still reported, every verdict is "not testable".
MIN_SPLITS = 5
#: Scopes a study-level verdict needs (a t interval over fewer is no test over pairs).
MIN_SCOPES = 3
#: Claims 4a/4b (BACC units): a source BACC loss smaller than this is no loss.
SOURCE_MARGIN = 0.01
#: Claim 3 (BACC units): FT and MME are comparable when their target BACC differs by less than this.
EQUIVALENCE_MARGIN = 0.02

GREATER, LESS, WITHIN = "greater", "less", "within"
#: The scope of study-level rows.
STUDY = "study"

COLUMNS = ["finding", "claim", "scope", "method", "direction", "margin", "effect", "ci_low", "ci_high",
           "n_splits", "test", "p", "verdict", "evidence", "family", "wilcoxon_p"]


@dataclass(frozen=True)
class Claim:
    """One claim: its id, sentence, region (``direction`` of ``threshold``; ``within``: +-margin),
    margin, what a cell is (``cells``: "shot count", "other survey"; empty for one cell) and whether
    its study-level test pools every scope's cells into one sample (``pool_cells``)."""

    finding: str
    text: str
    direction: str
    threshold: float
    margin: float
    cells: str = ""
    pool_cells: bool = False

    def region(self) -> str:
        if self.direction == WITHIN:
            return f"|effect| < {self.margin:g}"
        return f"effect {'>' if self.direction == GREATER else '<'} {self.threshold:+g}"

    def boundaries(self) -> tuple[float, ...]:
        return (-self.margin, self.margin) if self.direction == WITHIN else (self.threshold,)


def _state(claim: Claim, low: float, high: float) -> str:
    """``in`` (the interval inside the claim's region), ``out`` (entirely outside) or ``?``."""
    if math.isnan(low) or math.isnan(high):
        return "?"
    if claim.direction == GREATER:
        return "in" if low > claim.threshold else "out" if high < claim.threshold else "?"
    if claim.direction == LESS:
        return "in" if high < claim.threshold else "out" if low > claim.threshold else "?"
    m = claim.margin
    return "in" if (low > -m and high < m) else "out" if (low > m or high < -m) else "?"


def _claim_p(claim: Claim, p_above, p_below) -> float:
    """The one-sided p of ``claim``'s direction from a test's ``p_above(x)`` (mean > x) and ``p_below(x)``
    (mean < x); equivalence within the margin is the larger of the two one-sided p (TOST)."""
    if claim.direction == GREATER:
        return p_above(claim.threshold)
    if claim.direction == LESS:
        return p_below(claim.threshold)
    return max(p_above(-claim.margin), p_below(claim.margin))


@dataclass
class Cell:
    """One tested cell of a claim in a scope: its label (``5 shots``), values (per split, or per
    scope at study level) and interval."""

    label: str
    values: np.ndarray
    interval: stats.Interval
    strict: stats.Interval  # at the Bonferroni level, for contradicting an intersection
    p: float
    wilcoxon_p: float


def _cells(claim: Claim, samples: dict[str, np.ndarray], ratio: float) -> list[Cell]:
    m = len(samples)
    out = []
    for label, values in samples.items():
        values = np.asarray(values, float)
        interval = stats.corrected_interval(values, ratio)
        strict = stats.corrected_interval(values, ratio, 1 - stats.ALPHA / m) if m > 1 else interval
        t_p = _claim_p(claim, partial(stats.t_p_above, interval), partial(stats.t_p_below, interval))
        wilcoxon_p = _claim_p(claim, partial(stats.wilcoxon_p_above, values), partial(stats.wilcoxon_p_below, values))
        out.append(Cell(label, values, interval, strict, t_p, wilcoxon_p))
    return out


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.3f}"


def _fmt_p(p: float) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.2g}"


def _describe(cell: Cell) -> str:
    i = cell.interval
    return f"{cell.label}: {_fmt(i.effect)} [{_fmt(i.low)}, {_fmt(i.high)}]" if cell.label else \
        f"{_fmt(i.effect)} [{_fmt(i.low)}, {_fmt(i.high)}]"


def _settle(claim: Claim, cell: Cell, ratio: float, unit: str) -> str:
    """What would settle an inconclusive cell: the number of ``unit`` its interval needs at the
    observed mean and spread to clear the nearest boundary of the claim's region."""
    effect = cell.interval.effect
    distance = min(abs(effect - b) for b in claim.boundaries())
    needed = stats.splits_needed(cell.values, ratio, distance)
    if needed is None:
        if ratio > 0 and len(cell.values) >= 2 and np.std(cell.values) > 0:
            return (f"more {unit} of the same pool would not settle it at this spread (the corrected variance keeps "
                    f"n_test/n_train = {ratio:.3g}); a larger test set or an independent sample would")
        return "the effect sits on the boundary of the claim; no number of " + unit + " settles it"
    return f"about {needed} {unit} at the observed spread would settle it"


def _decide(claim: Claim, cells: list[Cell], n: int, least: int, ratio: float, unit: str
            ) -> tuple[str, Cell, str]:
    """The verdict of ``cells`` (an intersection when several), the decisive cell and the evidence."""
    if not cells:
        raise ValueError(f"claim {claim.finding}: no cells to decide on")
    weakest = max(cells, key=lambda c: -math.inf if math.isnan(c.p) else c.p)
    listing = "; ".join(_describe(c) for c in cells) if len(cells) > 1 else ""
    if n < least:
        return NOT_TESTABLE, weakest, f"{n} {unit} (a verdict needs at least {least})"
    against = [c for c in cells if _state(claim, c.strict.low, c.strict.high) == "out"]
    if against:
        worst = min(against, key=lambda c: -abs(c.interval.effect))
        where = f" at {worst.label}" if worst.label else ""
        level = f" (Bonferroni interval at {1 - stats.ALPHA / len(cells):.3g})" if len(cells) > 1 else ""
        return CONTRADICTED, worst, f"outside the claim{where}{level}" + (f"; {listing}" if listing else "")
    if all(_state(claim, c.interval.low, c.interval.high) == "in" for c in cells):
        text = "inside the claim" + (f" at every {claim.cells}" if len(cells) > 1 else "")
        return HOLDS, weakest, text + (f"; {listing}" if listing else "")
    open_cells = [c for c in cells if _state(claim, c.interval.low, c.interval.high) != "in"]
    deciding = max(open_cells, key=lambda c: -math.inf if math.isnan(c.p) else c.p)
    where = f"at {deciding.label}: " if deciding.label else ""
    text = f"undecided {where}{_settle(claim, deciding, ratio, unit)}"
    return INCONCLUSIVE, deciding, text + (f"; {listing}" if listing else "")


def _family(claim: Claim, labels: list[str]) -> str:
    if len(labels) <= 1:
        return "one test"
    return (f"intersection over {len(labels)} {claim.cells}s: holds only if every one holds at 95% (no "
            f"correction needed); contradicted if one is at the Bonferroni level {1 - stats.ALPHA / len(labels):.3g}")


def _row(claim: Claim, scope: str, method: str, verdict: str, cell: Cell, n: int, test: str, evidence: str,
         family: str, p: float, wilcoxon_p: float) -> dict:
    return {"finding": claim.finding, "claim": claim.text, "scope": scope, "method": method,
            "direction": claim.region(), "margin": claim.margin, "effect": cell.interval.effect,
            "ci_low": cell.interval.low, "ci_high": cell.interval.high, "n_splits": n, "test": test,
            "p": p, "verdict": verdict, "evidence": evidence, "family": family, "wilcoxon_p": wilcoxon_p}


def _max_p(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return max(present) if len(present) == len(values) and present else math.nan


# --- the data of each claim ----------------------------------------------------------------------


class StudyData:
    """Per-split BACC series of the baselines and the methods, keyed for the claims."""

    def __init__(self, baseline_runs: pd.DataFrame, scores: pd.DataFrame):
        self.baseline = {key: g.set_index("split")["bacc"].sort_index()
                         for key, g in baseline_runs.groupby(["trained_on", "tested_on"])}
        self.scores = {key: g.set_index("split")["bacc"].sort_index()
                       for key, g in scores.groupby(["method", "source", "target", "shots", "domain"])}

    def base(self, trained_on: str, tested_on: str) -> pd.Series:
        return self.baseline.get((trained_on, tested_on), pd.Series(dtype=float))

    def method(self, method: str, source: str, target: str, shots: int, domain: str) -> pd.Series:
        return self.scores.get((method, source, target, shots, domain), pd.Series(dtype=float))


def paired(a: pd.Series, b: pd.Series) -> np.ndarray:
    """``a - b`` on the splits both have."""
    common = a.index.intersection(b.index).sort_values()
    return (a.loc[common] - b.loc[common]).to_numpy(float)


def shots_to_beat_steps(data: StudyData, method: str, source: str, target: str, shots: list[int]) -> pd.Series:
    """Per split: the index in ``shots`` of the first shot count whose target BACC beats the baseline's
    (the source model on the target) in that split; ``len(shots)`` when none does."""
    reference = data.base(source, target)
    splits = reference.index
    for n in shots:
        splits = splits.intersection(data.method(method, source, target, n, "target").index)
    steps = {}
    for k in splits:
        beaten = [i for i, n in enumerate(shots)
                  if data.method(method, source, target, n, "target").loc[k] > reference.loc[k]]
        steps[k] = beaten[0] if beaten else len(shots)
    return pd.Series(steps, dtype=float).sort_index()


# --- evaluation ----------------------------------------------------------------------------------


def ratio_for(ratios: dict[str, float], survey: str) -> float:
    return ratios.get(survey, stats.DESIGN_TEST_TRAIN_RATIO)


def _corrected_test(ratio: float) -> str:
    return f"corrected resampled t, paired by split (Nadeau & Bengio 2003; n_test/n_train {ratio:.3g})"


class Evaluator:
    """Collects the per-scope rows and the per-scope cell effects for the study-level rows."""

    def __init__(self, least_splits: int = MIN_SPLITS):
        self.rows: list[dict] = []
        self.least_splits = least_splits
        #: (finding, claim text, method) -> (claim, {cell label: [scope effect, ...]}, n_splits, unit)
        self.study: dict[tuple, tuple[Claim, dict[str, list[float]], list[int], str]] = {}

    def scope(self, claim: Claim, scope: str, method: str, samples: dict[str, np.ndarray], ratio: float,
              unit: str = "pairs") -> None:
        cells = _cells(claim, samples, ratio)
        n = min((len(c.values) for c in cells), default=0)
        verdict, cell, evidence = _decide(claim, cells, n, self.least_splits, ratio, "splits")
        self.rows.append(_row(claim, scope, method, verdict, cell, n, _corrected_test(ratio), evidence,
                              _family(claim, list(samples)), _max_p([c.p for c in cells]),
                              _max_p([c.wilcoxon_p for c in cells])))
        key = (claim.finding, claim.text, method)
        _, by_cell, ns, _ = self.study.setdefault(key, (claim, {}, [], unit))
        ns.append(n)
        for c in cells:
            by_cell.setdefault("" if claim.pool_cells else c.label, []).append(c.interval.effect)

    def study_rows(self) -> list[dict]:
        rows = []
        for (_, _, method), (claim, by_cell, ns, unit) in self.study.items():
            samples = {label: np.asarray(v, float) for label, v in by_cell.items()}
            cells = _cells(claim, samples, 0.0)
            scopes = min(len(v) for v in samples.values())
            verdict, cell, evidence = _decide(claim, cells, scopes, MIN_SCOPES, 0.0, unit)
            if min(ns) < self.least_splits:
                verdict = NOT_TESTABLE
                evidence = f"{min(ns)} splits per {unit[:-1]} (a verdict needs at least {self.least_splits})"
            test = f"one-sample t over the {scopes} {unit}' mean effects"
            rows.append(_row(claim, STUDY, method, verdict, cell, min(ns), test, f"{scopes} {unit}; {evidence}",
                             _family(claim, list(samples)), _max_p([c.p for c in cells]),
                             _max_p([c.wilcoxon_p for c in cells])))
        return rows


def _shot_label(n: int) -> str:
    return f"{n} shot{'s' if n != 1 else ''}"


def findings_table(baseline_runs: pd.DataFrame, scores: pd.DataFrame, surveys: list[str],
                   pairs: list[tuple[str, str]], methods: list[str], shots: list[int],
                   ratios: dict[str, float] | None = None, least_splits: int = MIN_SPLITS) -> pd.DataFrame:
    """Every claim's verdict per scope and for the study (columns :data:`COLUMNS`), study-level rows first.

    ``baseline_runs``: trained_on, tested_on, split, bacc; ``scores``: method, source, target, shots,
    domain, split, bacc; ``shots``: the configured shot counts; ``ratios``: n_test/n_train per
    survey (:func:`split_size_ratios`; missing surveys get the split design's).
    """
    ratios = ratios or {}
    shots = sorted(shots)
    data = StudyData(baseline_runs, scores)
    ev = Evaluator(least_splits)

    row_claim = Claim("1a", "the baseline scores higher on its own survey than on every other", GREATER, 0.0, 0.0,
                      "other survey", pool_cells=True)
    column_claim = Claim("1b", "on a survey's test part, the model trained on it beats every model trained "
                               "elsewhere", GREATER, 0.0, 0.0, "other survey", pool_cells=True)
    for own in surveys:
        others = [s for s in surveys if s != own]
        ev.scope(row_claim, f"trained on {survey_label(own)}", "baseline",
                 {f"vs {survey_label(o)}": paired(data.base(own, own), data.base(own, o)) for o in others},
                 ratio_for(ratios, own), "surveys")
        ev.scope(column_claim, f"tested on {survey_label(own)}", "baseline",
                 {f"vs trained on {survey_label(o)}": paired(data.base(own, own), data.base(o, own)) for o in others},
                 ratio_for(ratios, own), "surveys")

    first = shots[0]
    for method in methods:
        claim = Claim("2", f"{method_label(method)} beats the baseline on the target at {_shot_label(first)}",
                      GREATER, 0.0, 0.0)
        for source, target in pairs:
            ev.scope(claim, pair_label(source, target), method,
                     {"": paired(data.method(method, source, target, first, "target"), data.base(source, target))},
                     ratio_for(ratios, target))

    both = "finetune" in methods and "mme" in methods
    if both:
        claim = Claim("3", f"FT and MME are comparable on the target (|MME − FT| < {EQUIVALENCE_MARGIN:g} at every "
                           "shot count)", WITHIN, 0.0, EQUIVALENCE_MARGIN, "shot count")
        for source, target in pairs:
            ev.scope(claim, pair_label(source, target), "mme − finetune",
                     {_shot_label(n): paired(data.method("mme", source, target, n, "target"),
                                             data.method("finetune", source, target, n, "target")) for n in shots},
                     ratio_for(ratios, target))

    for method in methods:
        if method == "finetune":
            claim = Claim("4a", f"FT degrades the source: below the baseline by more than {SOURCE_MARGIN:g} at every "
                                "shot count", LESS, -SOURCE_MARGIN, SOURCE_MARGIN, "shot count")
        else:
            beside = "" if method == "mme" else " (beside the paper's claims)"
            claim = Claim("4b", f"{method_label(method)} does not degrade the source: not below the baseline by "
                                f"more than {SOURCE_MARGIN:g} at any shot count{beside}", GREATER, -SOURCE_MARGIN,
                          SOURCE_MARGIN, "shot count")
        for source, target in pairs:
            ev.scope(claim, pair_label(source, target), method,
                     {_shot_label(n): paired(data.method(method, source, target, n, "source"), data.base(source, source))
                      for n in shots}, ratio_for(ratios, source))

    if both:
        claim = Claim("4c", "MME keeps more source BACC than FT at every shot count", GREATER, 0.0, 0.0, "shot count")
        for source, target in pairs:
            ev.scope(claim, pair_label(source, target), "mme − finetune",
                     {_shot_label(n): paired(data.method("mme", source, target, n, "source"),
                                             data.method("finetune", source, target, n, "source")) for n in shots},
                     ratio_for(ratios, source))
        claim = Claim("5", "MME needs fewer shots than FT to beat the baseline on the target (effect: FT's minus MME's "
                           "shots-to-beat per split, in steps of the shot grid; never = one step past it)",
                      GREATER, 0.0, 0.0)
        for source, target in pairs:
            ev.scope(claim, pair_label(source, target), "finetune − mme",
                     {"": paired(shots_to_beat_steps(data, "finetune", source, target, shots),
                                 shots_to_beat_steps(data, "mme", source, target, shots))},
                     ratio_for(ratios, target))

    frame = pd.DataFrame(ev.study_rows() + ev.rows, columns=COLUMNS)
    return frame


def split_size_ratios(runs) -> dict[str, float]:
    """n_test / n_train per survey from its baseline runs: the test evaluation's ``n`` of its own
    survey over ``data.source_train`` (the median over splits); surveys whose runs do not record
    both are left out (the split design's ratio is used for them)."""
    ratios: dict[str, list[float]] = {}
    for run in runs:
        if run.method != "baseline":
            continue
        train = (run.data.get("data") or {}).get("source_train")
        test = next((e.get("n") for e in run.data["evaluations"]
                     if e["part"] == "test" and e["survey"] == run.source), None)
        if isinstance(train, int) and train > 0 and isinstance(test, int) and test > 0:
            ratios.setdefault(run.source, []).append(test / train)
    return {survey: float(np.median(values)) for survey, values in ratios.items()}


def too_few_splits(findings: pd.DataFrame, least: int = MIN_SPLITS) -> int | None:
    """The number of splits when it is below what a verdict needs (``None`` otherwise)."""
    scoped = findings[findings["scope"] != STUDY]
    if scoped.empty:
        return None
    n = int(scoped["n_splits"].min())
    return n if n < least else None


def summary(findings: pd.DataFrame) -> pd.DataFrame:
    """Per claim and method: the study-level verdict and how many scopes got each verdict."""
    study = findings[findings["scope"] == STUDY]
    scoped = findings[findings["scope"] != STUDY]
    rows = []
    for _, r in study.iterrows():
        mine = scoped[(scoped["finding"] == r["finding"]) & (scoped["claim"] == r["claim"])
                      & (scoped["method"] == r["method"])]
        counts = mine["verdict"].value_counts()
        rows.append({"finding": r["finding"], "claim": r["claim"], "method": r["method"],
                     "effect [95% interval]": f"{_fmt(r['effect'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
                     "region": r["direction"], "study verdict": r["verdict"],
                     "per scope": ", ".join(f"{v} {int(counts.get(v, 0))}" for v in VERDICTS if counts.get(v, 0))})
    return pd.DataFrame(rows, columns=["finding", "claim", "method", "effect [95% interval]", "region",
                                       "study verdict", "per scope"])


def display(findings: pd.DataFrame) -> pd.DataFrame:
    """Every row for reading (the study's first): effect and interval in one cell, p rounded."""
    scoped = findings
    return pd.DataFrame({
        "finding": scoped["finding"], "scope": scoped["scope"], "method": scoped["method"].map(method_label),
        "region": scoped["direction"],
        "effect [95% interval]": [f"{_fmt(e)} [{_fmt(lo)}, {_fmt(hi)}]"
                                  for e, lo, hi in zip(scoped["effect"], scoped["ci_low"], scoped["ci_high"])],
        "p": [_fmt_p(p) for p in scoped["p"]], "Wilcoxon p": [_fmt_p(p) for p in scoped["wilcoxon_p"]],
        "verdict": scoped["verdict"], "evidence": scoped["evidence"]})
