"""Tables of the study, built from the loaded runs.

All tables are pandas DataFrames in *long* (tidy) form for CSV, with a few
*wide* views for Markdown and the report. Means and standard deviations are
over splits; the standard deviation is the sample one (``ddof=1``) and is left
empty when a cell has a single split (``n_splits`` says so).
"""

from __future__ import annotations

import math

import pandas as pd

from rbda.errors import RbdaError
from rbda.results import stats
from rbda.results.naming import method_label, pair_label, survey_label
from rbda.results.runs import KIND_BASELINE, Run, score_kind
from rbda.registry import ADAPTATION_METHODS, LAMBDA_METHODS, METHODS
from rbda.study import PAIR_SELECTION_RULES, format_lambda, pair_name

NEVER = "never"
NOT_TESTABLE = "not testable"

# --- the tidy table of all test evaluations --------------------------------------------


#: The metrics survey teams report (rbda.learn.metrics.survey_team_metrics), as columns of the
#: tidy evaluations: ROC AUC, purity and completeness of the model's call, and the false-positive
#: rate and completeness reached on the test part at the thresholds chosen on validation for 95%
#: and 99% completeness. NaN where a run does not record them (runs written before they were).
SURVEY_METRICS = ("roc_auc", "purity", "completeness", "fpr_at_95", "completeness_at_95",
                  "fpr_at_99", "completeness_at_99")


def _survey_metric_values(evaluation: dict) -> dict[str, float]:
    team = evaluation.get("survey_metrics") or {}
    at = team.get("at_completeness") or {}
    number = lambda value: float("nan") if value is None else float(value)  # noqa: E731
    values = {name: number(team.get(name)) for name in ("roc_auc", "purity", "completeness")}
    for target, suffix in (("0.95", "95"), ("0.99", "99")):
        point = at.get(target) or {}
        values[f"fpr_at_{suffix}"] = number(point.get("fpr"))
        values[f"completeness_at_{suffix}"] = number(point.get("completeness"))
    return values


def tidy_evaluations(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, evaluation on a test part): its BACC and the survey teams' metrics."""
    rows = []
    for run in runs:
        for evaluation in run.data["evaluations"]:
            if evaluation["part"] != "test":
                continue
            rows.append({
                "kind": run.kind, "source": run.source, "target": run.target,
                "split": run.split, "shots": run.shots, "lambda": run.lambda_name,
                "val_bacc": run.val_bacc, "survey": evaluation["survey"],
                "role": evaluation["role"], "bacc": float(evaluation["bacc"]),
                **_survey_metric_values(evaluation), "path": str(run.path),
            })
    return pd.DataFrame(rows, columns=["kind", "source", "target", "split", "shots", "lambda",
                                       "val_bacc", "survey", "role", "bacc", *SURVEY_METRICS, "path"])


def survey_metrics_table(evaluations: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """BACC beside the survey teams' metrics, mean over splits, on each pair's target test part:
    the baseline trained on the source (shots 0) and every adaptation method's scored runs (a
    lambda method's selected runs) per shot count. Columns: method, source, target, shots,
    n_splits, bacc, then :data:`SURVEY_METRICS`."""
    kinds = {score_kind(m): m for m in ADAPTATION_METHODS}
    frames = []
    for source, target in pairs:
        home = evaluations[(evaluations["kind"] == KIND_BASELINE) & (evaluations["source"] == source)
                           & (evaluations["survey"] == target)]
        frames.append(home.assign(method=KIND_BASELINE, target=target, shots=0))
        adapted = evaluations[evaluations["kind"].isin(kinds) & (evaluations["source"] == source)
                              & (evaluations["target"] == target) & (evaluations["role"] == "target")]
        frames.append(adapted.assign(method=adapted["kind"].map(kinds)))
    columns = ["method", "source", "target", "shots", "n_splits", "bacc", *SURVEY_METRICS]
    rows = pd.concat(frames) if frames else pd.DataFrame()
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows.assign(shots=rows["shots"].astype(int))
    keys = ["method", "source", "target", "shots"]
    table = rows.groupby(keys, sort=False).agg(
        n_splits=("split", "nunique"), bacc=("bacc", "mean"),
        **{name: (name, "mean") for name in SURVEY_METRICS}).reset_index()
    return table[columns].reset_index(drop=True)


def survey_metrics_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`survey_metrics_table` averaged over the pairs, per method and shot count (baseline:
    shots 0, each pair's source model on its target), for the report: pairs, then the metrics."""
    if table.empty:
        return table
    summary = table.groupby(["method", "shots"], sort=False).agg(
        pairs=("target", "size"), bacc=("bacc", "mean"),
        **{name: (name, "mean") for name in SURVEY_METRICS}).reset_index()
    return summary.sort_values(["method", "shots"], key=_vocabulary_order, kind="stable").reset_index(drop=True)


def baseline_scores(evaluations: pd.DataFrame) -> pd.DataFrame:
    """Baseline BACC per split: columns trained_on, tested_on, split, bacc."""
    rows = evaluations[evaluations["kind"] == KIND_BASELINE]
    return (rows.rename(columns={"source": "trained_on", "survey": "tested_on"})
            [["trained_on", "tested_on", "split", "bacc"]].reset_index(drop=True))


def methods_in(evaluations: pd.DataFrame) -> list[str]:
    """The adaptation methods whose scored runs are present, in the vocabulary's order
    (``rbda.study.ADAPTATION_METHODS``; a lambda method counts by its selected runs)."""
    kinds = set(evaluations["kind"])
    return [m for m in ADAPTATION_METHODS if score_kind(m) in kinds]


def method_order(methods) -> list[str]:
    """``methods`` sorted in the vocabulary's order."""
    rank = {m: i for i, m in enumerate(METHODS)}
    return sorted(methods, key=lambda m: rank.get(m, len(rank)))


def check_methods(runs: list[Run], methods: list[str]) -> None:
    """Raise naming the runs of adaptation methods that are not configured (``methods``),
    rather than leaving them out of the tables."""
    stray: dict[str, list[Run]] = {}
    for run in runs:
        if run.method != KIND_BASELINE and run.method not in methods:
            stray.setdefault(run.method, []).append(run)
    if stray:
        parts = []
        for method in method_order(stray):
            group = stray[method]
            shown = ", ".join(str(r.path) for r in group[:3]) + (f" and {len(group) - 3} more" if len(group) > 3 else "")
            parts.append(f"{method} ({len(group)} run(s): {shown})")
        raise RbdaError(f"the runs list has runs of method(s) that are not configured (methods: "
                        f"{', '.join(methods)}): {'; '.join(parts)}; add the method to the config's "
                        f"'methods' or leave its runs out of the list")


def method_scores(evaluations: pd.DataFrame) -> pd.DataFrame:
    """BACC per split on source and target of every adaptation method's scored runs (a lambda
    method's selected runs, every other method's runs).

    Columns: method (finetune, mme, st, ent, dann), source, target, shots, domain
    (source or target), split, bacc.
    """
    kinds = {score_kind(m): m for m in ADAPTATION_METHODS}
    rows = evaluations[evaluations["kind"].isin(kinds) & evaluations["role"].isin(["source", "target"])]
    rows = rows.assign(method=rows["kind"].map(kinds), domain=rows["role"],
                       shots=rows["shots"].astype(int))
    return rows[["method", "source", "target", "shots", "domain", "split", "bacc"]].reset_index(drop=True)


def lambda_scores(runs: list[Run]) -> pd.DataFrame:
    """Validation BACC of every unselected run of a lambda method (the candidates):
    method, source, target, shots, lambda, split, val_bacc."""
    rows = [{"method": r.method, "source": r.source, "target": r.target, "shots": r.shots, "lambda": r.lambda_,
             "split": r.split, "val_bacc": r.val_bacc}
            for r in runs if r.method in LAMBDA_METHODS and not r.is_selected]
    return pd.DataFrame(rows, columns=["method", "source", "target", "shots", "lambda", "split", "val_bacc"])


def chosen_lambdas(runs: list[Run]) -> pd.DataFrame:
    """The lambda of each selected run of a lambda method: method, source, target, shots, split,
    lambda, rule, tie, tie_broken_by (``none`` for runs selected before ties were recorded)."""
    rows = []
    for r in runs:
        if r.method not in LAMBDA_METHODS or not r.is_selected:
            continue
        selection = r.data["selection"]
        rows.append({"method": r.method, "source": r.source, "target": r.target, "shots": r.shots,
                     "split": r.split, "lambda": r.lambda_, "rule": selection["rule"],
                     "tie": bool(selection.get("tie", False)),
                     "tie_broken_by": selection.get("tie_broken_by", "none")})
    return pd.DataFrame(rows, columns=["method", "source", "target", "shots", "split", "lambda", "rule", "tie",
                                       "tie_broken_by"])


LAMBDA_CHOICE_COLUMNS = ["source", "target", "pair", "method", "rule", "chosen_lambdas", "n_selections", "n_choices",
                         "n_ties", "ties_broken_by"]


def _choices(group: pd.DataFrame) -> pd.DataFrame:
    """One row per choice made: a per-pair rule (per_pair, first_split) chooses once per split and
    applies that choice to the split's selected runs of every shot count; per_split chooses once
    per (shots, split)."""
    per_pair = group[group["rule"].isin(PAIR_SELECTION_RULES)].drop_duplicates(["rule", "split"])
    return pd.concat([per_pair, group[~group["rule"].isin(PAIR_SELECTION_RULES)]])


def lambda_choices(chosen: pd.DataFrame) -> pd.DataFrame:
    """Per pair and lambda method: the rule, the lambda(s) chosen (with how many selections each),
    how many choices were made, how many of them were ties and how each tie was broken (a choice
    counts once, however many selected runs it applies to)."""
    rows = []
    for (source, target, method), group in chosen.groupby(["source", "target", "method"], sort=False):
        counts = group["lambda"].value_counts().sort_index()
        choices = _choices(group)
        broken = choices.loc[choices["tie"], "tie_broken_by"].value_counts().sort_index()
        rows.append({"source": source, "target": target, "pair": pair_name(source, target), "method": method,
                     "rule": ", ".join(sorted(set(group["rule"]))),
                     "chosen_lambdas": ", ".join(f"{format_lambda(lam)} ({n})" for lam, n in counts.items()),
                     "n_selections": len(group), "n_choices": len(choices), "n_ties": int(choices["tie"].sum()),
                     "ties_broken_by": ", ".join(f"{how} ({n})" for how, n in broken.items()) or "–"})
    return pd.DataFrame(rows, columns=LAMBDA_CHOICE_COLUMNS)


SELECTION_REGRET_COLUMNS = ["source", "target", "pair", "method", "selected_test_bacc", "hindsight_lambda",
                            "hindsight_test_bacc", "regret", "n_groups"]


def selection_regret(evaluations: pd.DataFrame) -> pd.DataFrame:
    """What choosing lambda on validation costs, per pair and lambda method: the mean target test BACC
    of the selected runs minus that of the single lambda that is best on the target test parts in
    hindsight (the mean over the pair's (shots, split) groups). A per-pair rule applies one lambda,
    so its regret is <= 0 (0: it found the hindsight lambda); per_split may pick a different lambda
    per group and so also beat the best single one (regret > 0). Only groups with both a selected run and every
    per-lambda run count (``n_groups``)."""
    target = evaluations[evaluations["role"] == "target"]
    rows = []
    for method in LAMBDA_METHODS:
        candidates = target[target["kind"] == method]
        selected = target[target["kind"] == f"{method}-selected"]
        if candidates.empty or selected.empty:
            continue
        for (source, target_survey), group in candidates.groupby(["source", "target"], sort=False):
            chosen = selected[(selected["source"] == source) & (selected["target"] == target_survey)]
            by_group = group.pivot_table(index=["shots", "split"], columns="lambda", values="bacc", aggfunc="first")
            by_group = by_group.dropna()
            picked = chosen.set_index(["shots", "split"])["bacc"]
            common = by_group.index.intersection(picked.index)
            if not len(common):
                continue
            means = by_group.loc[common].mean()
            best = means.idxmax()
            selected_mean = float(picked.loc[common].mean())
            rows.append({"source": source, "target": target_survey, "pair": pair_name(source, target_survey),
                         "method": method, "selected_test_bacc": selected_mean, "hindsight_lambda": best,
                         "hindsight_test_bacc": float(means[best]), "regret": selected_mean - float(means[best]),
                         "n_groups": len(common)})
    return pd.DataFrame(rows, columns=SELECTION_REGRET_COLUMNS)


def training_stops(runs: list[Run]) -> pd.DataFrame:
    """Per kind of run: how many stopped by patience, by the max_epochs cap, or do not say;
    and where the kept (best) epoch lies (0 = the starting model, 1 = after one epoch)."""
    rows = []
    for kind in METHODS:  # a lambda method: every per-lambda run (its selected copies are not counted twice)
        group = [r for r in runs if r.kind == kind]
        if not group:
            continue
        training = [r.data.get("training") or {} for r in group]
        stopped = [t.get("stopped_by") for t in training]
        best = [t["best_epoch"] for t in training if isinstance(t.get("best_epoch"), int)]
        rows.append({"method": kind, "runs": len(group),
                     "stopped_by_patience": stopped.count("patience"),
                     "stopped_by_max_epochs": stopped.count("max_epochs"),
                     "stop_not_recorded": sum(s not in ("patience", "max_epochs") for s in stopped),
                     "best_epoch_0": best.count(0), "best_epoch_1": best.count(1),
                     "best_epoch_median": float(pd.Series(best).median()) if best else math.nan})
    return pd.DataFrame(rows, columns=["method", "runs", "stopped_by_patience", "stopped_by_max_epochs",
                                       "stop_not_recorded", "best_epoch_0", "best_epoch_1",
                                       "best_epoch_median"])


# --- completeness ---------------------------------------------------------------------------


def check_study(baseline: pd.DataFrame, scores: pd.DataFrame, surveys: list[str],
                pairs: list[tuple[str, str]], methods: list[str] | None = None,
                shots: list[int] | None = None) -> None:
    """Every survey's baseline is evaluated on every survey, on the same splits as its adapted
    runs, and every adapted run is of a configured pair. With the configured ``methods`` and
    ``shots``: every (pair, method, shots, baseline split) has its run, tested on source and
    target (a missing run would silently drop out of the tables and tests)."""
    if baseline.empty:
        raise RbdaError("the runs list has no baseline runs (method 'baseline'); "
                        "the tables need one per (survey, split)")
    for source in surveys:
        trained = baseline[baseline["trained_on"] == source]
        if trained.empty:
            raise RbdaError(f"the runs list has no baseline run trained on {source!r}")
        for tested_on in surveys:
            if not (trained["tested_on"] == tested_on).any():
                raise RbdaError(f"the baseline runs trained on {source!r} have no test evaluation "
                                f"on {tested_on!r}; every baseline is evaluated on all configured surveys")
    for (source, target), group in scores.groupby(["source", "target"]):
        if (source, target) not in pairs:
            raise RbdaError(f"the runs list has adapted runs for {pair_name(source, target)}, which is not "
                            f"among the configured pairs {[pair_name(*p) for p in pairs]}")
        have = set(baseline.loc[(baseline["trained_on"] == source)
                                & (baseline["tested_on"] == target), "split"])
        missing = sorted(set(group["split"]) - have)
        if missing:
            raise RbdaError(f"pair {pair_name(source, target)} has adapted runs for split(s) {missing} "
                            f"but no baseline run trained on {source!r} for them")
    if methods is None or shots is None:
        return
    have = set(zip(scores["source"], scores["target"], scores["method"], scores["shots"], scores["split"],
                   scores["domain"]))
    absent = []
    for source, target in pairs:
        splits = sorted(set(baseline.loc[baseline["trained_on"] == source, "split"]))
        for method in methods:
            for n in shots:
                for k in splits:
                    lacking = [d for d in ("source", "target") if (source, target, method, n, k, d) not in have]
                    if lacking:
                        absent.append(f"{method} {pair_name(source, target)} shots={n} split={k}"
                                      + ("" if len(lacking) == 2 else f" (no {lacking[0]} evaluation)"))
    if absent:
        raise RbdaError(f"the runs list lacks {len(absent)} run(s) of the configured study (methods "
                        f"{', '.join(methods)}, shots {', '.join(map(str, shots))}, every baseline split), e.g. "
                        + "; ".join(absent[:5]) + "; a study with missing runs would drop them from the tables")


def in_study_order(frame: pd.DataFrame, surveys: list[str], then: list[str]) -> pd.DataFrame:
    """Rows sorted by source and target in the configured survey order, then by ``then``
    (methods in the vocabulary's order)."""
    rank = {s: i for i, s in enumerate(surveys)}
    keys = ["source", "target", *then]

    def key(column: pd.Series) -> pd.Series:
        return column.map(rank) if column.name in ("source", "target") else _vocabulary_order(column)

    return frame.sort_values(keys, key=key, kind="stable").reset_index(drop=True)


def _vocabulary_order(column: pd.Series) -> pd.Series:
    """A sort key: method columns by the registry's order (unknown names last), others as they are."""
    if column.name not in ("method", "method_a", "method_b"):
        return column
    rank = {m: i for i, m in enumerate(METHODS)}
    return column.map(lambda m: rank.get(m, len(rank)))


# --- summaries -------------------------------------------------------------------------------


def _summarise(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    grouped = frame.groupby(keys, sort=False)[value]
    out = grouped.agg(mean="mean", std=lambda x: x.std(ddof=1) if len(x) > 1 else math.nan,
                      n_splits="count").reset_index()
    return out


def format_mean_std(mean: float, std: float, n: int) -> str:
    """``0.955 ± 0.003``; a single split shows ``0.955 (1 split)``; no data ``–``."""
    if n == 0 or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if n == 1 or math.isnan(std):
        return f"{mean:.3f} (1 split)"
    return f"{mean:.3f} ± {std:.3f}"


def baseline_table(baseline: pd.DataFrame, surveys: list[str]) -> pd.DataFrame:
    """Long form: trained_on, tested_on, mean, std, n_splits (in survey order)."""
    table = _summarise(baseline, ["trained_on", "tested_on"], "bacc")
    order = {s: i for i, s in enumerate(surveys)}
    return (table.sort_values(["trained_on", "tested_on"], key=lambda c: c.map(order))
            .reset_index(drop=True))


def baseline_matrix(table: pd.DataFrame, surveys: list[str]) -> pd.DataFrame:
    """Wide view: rows trained on, columns tested on, ``mean ± std`` strings."""
    cells = {(r.trained_on, r.tested_on): format_mean_std(r.mean, r.std, r.n_splits)
             for r in table.itertuples()}
    return pd.DataFrame(
        [[cells.get((row, col), "–") for col in surveys] for row in surveys],
        index=pd.Index([survey_label(s) for s in surveys], name="trained on \\ tested on"),
        columns=[survey_label(s) for s in surveys],
    )


def methods_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Long form: source, target, pair, method, shots, domain, mean, std, n_splits."""
    table = _summarise(scores, ["source", "target", "method", "shots", "domain"], "bacc")
    table.insert(2, "pair", [pair_name(s, t) for s, t in zip(table["source"], table["target"])])
    return table.sort_values(["pair", "method", "domain", "shots"]).reset_index(drop=True)


def pair_table(methods: pd.DataFrame, baseline: pd.DataFrame, source: str, target: str) -> pd.DataFrame:
    """One pair, wide: a row per shot count, every method of the study (``methods``) on source
    and on target.

    The first row (shots "baseline") is the source model itself on the source
    and on the target.
    """
    rows = methods[(methods["source"] == source) & (methods["target"] == target)]
    columns = [(m, d) for d in ("source", "target") for m in method_order(methods["method"].unique())]
    header = [f"{method_label(m)} on {d} ({survey_label(source if d == 'source' else target)})"
              for m, d in columns]
    cells = {(r.method, r.domain, r.shots): format_mean_std(r.mean, r.std, r.n_splits)
             for r in rows.itertuples()}
    base = {d: baseline[(baseline["trained_on"] == source)
                        & (baseline["tested_on"] == (source if d == "source" else target))]
            for d in ("source", "target")}
    base_cells = [format_mean_std(base[d]["mean"].iloc[0], base[d]["std"].iloc[0],
                                  base[d]["n_splits"].iloc[0]) if len(base[d]) else "–"
                  for _, d in columns]
    body = [["baseline", *base_cells]]
    for shots in sorted(rows["shots"].unique()):
        body.append([str(shots), *[cells.get((m, d, shots), "–") for m, d in columns]])
    return pd.DataFrame(body, columns=["shots", *header])


def pair_table_numeric(methods: pd.DataFrame, source: str, target: str) -> pd.DataFrame:
    """One pair for CSV: shots, then mean/std/n_splits per (method, domain)."""
    rows = methods[(methods["source"] == source) & (methods["target"] == target)]
    wide = rows.pivot_table(index="shots", columns=["method", "domain"],
                            values=["mean", "std", "n_splits"], aggfunc="first", dropna=False)
    wide.columns = [f"{m}_{d}_{stat}" for stat, m, d in wide.columns]
    order = [f"{m}_{d}_{stat}" for d in ("source", "target") for m in method_order(methods["method"].unique())
             for stat in ("mean", "std", "n_splits")]
    return wide.reindex(columns=[c for c in order if c in wide.columns]).reset_index()


def lambda_table(lambdas: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Long form, per lambda method: source, target, pair, method, shots, lambda, val mean/std/n,
    times chosen."""
    columns = ["source", "target", "pair", "method", "shots", "lambda", "mean_val_bacc", "std_val_bacc",
               "n_splits", "times_chosen", "n_selected_splits"]
    if lambdas.empty:
        return pd.DataFrame(columns=columns)
    table = _summarise(lambdas, ["source", "target", "method", "shots", "lambda"], "val_bacc")
    table = table.rename(columns={"mean": "mean_val_bacc", "std": "std_val_bacc"})
    counts = chosen.groupby(["source", "target", "method", "shots", "lambda"]).size().rename("times_chosen")
    totals = chosen.groupby(["source", "target", "method", "shots"]).size().rename("n_selected_splits")
    table = table.join(counts, on=["source", "target", "method", "shots", "lambda"])
    table = table.join(totals, on=["source", "target", "method", "shots"])
    table[["times_chosen", "n_selected_splits"]] = table[["times_chosen", "n_selected_splits"]].fillna(0).astype(int)
    table.insert(2, "pair", [pair_name(s, t) for s, t in zip(table["source"], table["target"])])
    return table.sort_values(["pair", "method", "shots", "lambda"]).reset_index(drop=True)[columns]


def lambda_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Wide view: a row per (pair, lambda method, shots), mean validation BACC per lambda, the
    chosen lambdas."""
    lambdas = sorted(table["lambda"].unique())
    body = []
    for (source, target, method, shots), group in table.groupby(["source", "target", "method", "shots"],
                                                                sort=False):
        by_lambda = {r["lambda"]: r for _, r in group.iterrows()}
        picked = [f"{format_lambda(r['lambda'])} ({r['times_chosen']}/{r['n_selected_splits']})"
                  for _, r in group.iterrows() if r["times_chosen"] > 0]
        body.append([pair_label(source, target), method_label(method), str(shots),
                     *[format_mean_std(by_lambda[lam]["mean_val_bacc"], by_lambda[lam]["std_val_bacc"],
                                       by_lambda[lam]["n_splits"]) if lam in by_lambda else "–"
                       for lam in lambdas],
                     ", ".join(picked) or "–"])
    return pd.DataFrame(body, columns=["pair", "method", "shots", *[f"λ={format_lambda(x)}" for x in lambdas],
                                       "chosen λ (splits)"])


# --- shots to beat the baseline -----------------------------------------------------------------


def _flag(value) -> bool:
    """A boolean cell that may be missing (after a reindex): missing counts as False."""
    return bool(value) if not pd.isna(value) else False


def _first_shots(shots: list[int], condition: list[bool]) -> int | str:
    for n, ok in zip(shots, condition):
        if ok:
            return int(n)
    return NEVER


def shots_to_beat(methods: pd.DataFrame, baseline: pd.DataFrame, versus_baseline: pd.DataFrame,
                  pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Per pair and method: the smallest shot count that beats the baseline on the target.

    ``shots_to_beat`` (thesis): smallest shots whose mean target BACC exceeds
    the baseline's mean BACC on the target (source model evaluated on the
    target). ``shots_to_beat_significant``: smallest shots that does so and
    whose one-sided paired t-test against the baseline (by split; Welch's
    test if no split is shared) has a Holm-adjusted p < 0.05 (family: the
    pair's shot counts). ``never`` when no tested shot count qualifies; ``not testable``
    when no such test at any shot count could be computed (see the note).
    """
    rows = []
    welch = versus_baseline[versus_baseline["test"].isin(stats.PRIMARY_TESTS)
                            & (versus_baseline["domain"] == "target")]
    for source, target in pairs:
        base = baseline[(baseline["trained_on"] == source) & (baseline["tested_on"] == target)]
        base_mean = float(base["mean"].iloc[0])
        for method in method_order(methods["method"].unique()):
            curve = methods[(methods["source"] == source) & (methods["target"] == target)
                            & (methods["method"] == method) & (methods["domain"] == "target")]
            curve = curve.sort_values("shots")
            if curve.empty:
                continue
            shots = curve["shots"].tolist()
            beats = (curve["mean"] > base_mean).tolist()
            tests = (welch[(welch["source"] == source) & (welch["target"] == target)
                           & (welch["method"] == method)].set_index("shots").reindex(shots))
            significant = [b and _flag(s) for b, s in zip(beats, tests["significant"])]
            testable = tests["p"].notna().any()
            strict = _first_shots(shots, significant) if testable else NOT_TESTABLE
            note = "" if testable else "; ".join(sorted(set(tests["note"].dropna())))
            rows.append({"source": source, "target": target, "pair": pair_name(source, target),
                         "method": method, "baseline_target_mean": base_mean,
                         "shots_tested": " ".join(str(n) for n in shots),
                         "shots_to_beat": _first_shots(shots, beats),
                         "shots_to_beat_significant": strict, "note": note})
    return pd.DataFrame(rows, columns=["source", "target", "pair", "method", "baseline_target_mean",
                                       "shots_tested", "shots_to_beat", "shots_to_beat_significant",
                                       "note"])


def shots_to_beat_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Wide view: a row per pair, the methods side by side (significant in brackets)."""
    methods = method_order(table["method"].unique())
    body = []
    for (source, target), group in table.groupby(["source", "target"], sort=False):
        cells = {}
        for _, r in group.iterrows():
            cells[r["method"]] = f"{r['shots_to_beat']} ({r['shots_to_beat_significant']})"
        body.append([pair_label(source, target), f"{group['baseline_target_mean'].iloc[0]:.3f}",
                     *[cells.get(m, "–") for m in methods]])
    return pd.DataFrame(body, columns=["pair", "baseline on target",
                                       *[f"{method_label(m)}: shots (significant)" for m in methods]])


# --- which method wins ------------------------------------------------------------------------------


def winner_from(shots: list[int], winners: list[str]) -> str:
    """``MME from 5 shots``: the method that wins at the largest shot count and
    every count from some smallest count on; ``tie`` entries break the streak."""
    if not winners:
        return "–"
    last = winners[-1]
    if last == "tie":
        return f"tie at {shots[-1]} shots"
    start = len(winners) - 1
    while start > 0 and winners[start - 1] == last:
        start -= 1
    return f"{last} from {shots[start]} shot{'s' if shots[start] != 1 else ''}"


def winners_table(methods: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per pair, domain and pair of methods (a, b): who wins at each shot count, from which
    count, where the difference is significant.

    ``comparisons``: :func:`rbda.results.stats.compare_method_pairs` (columns method_a,
    method_b; ``mean_diff`` is a - b). Only pairs of methods that were compared appear.
    """
    rows = []
    primary = comparisons[comparisons["test"].isin(stats.PRIMARY_TESTS)]
    compared = list(dict.fromkeys(zip(comparisons["method_a"], comparisons["method_b"])))
    for (source, target, domain), group in methods.groupby(["source", "target", "domain"], sort=False):
        means = group.pivot_table(index="shots", columns="method", values="mean").round(12)  # float-equal: tie
        for a, b in compared:
            if not {a, b} <= set(means.columns):
                continue
            both = means[[a, b]].dropna().sort_index()
            shots = both.index.tolist()
            la, lb = method_label(a), method_label(b)
            winners = [(la if x > y else lb if y > x else "tie") for x, y in zip(both[a], both[b])]
            tests = primary[(primary["source"] == source) & (primary["target"] == target)
                            & (primary["domain"] == domain) & (primary["method_a"] == a)
                            & (primary["method_b"] == b)].set_index("shots")
            significant = [f"{n} ({la if tests.loc[n, 'mean_diff'] > 0 else lb})"
                           for n in shots if n in tests.index and _flag(tests.loc[n, "significant"])]
            rows.append({"source": source, "target": target, "pair": pair_name(source, target),
                         "domain": domain, "method_a": a, "method_b": b,
                         "winner_by_shots": " ".join(f"{n}:{w}" for n, w in zip(shots, winners)),
                         "a_wins": f"{winners.count(la)}/{len(winners)}",
                         "wins_from": winner_from(shots, winners),
                         "significant_at_shots": ", ".join(significant) or "none"})
    return pd.DataFrame(rows, columns=["source", "target", "pair", "domain", "method_a", "method_b",
                                       "winner_by_shots", "a_wins", "wins_from", "significant_at_shots"])


# --- ranking, source cost vs target gain ------------------------------------------------------------


RANKING_COLUMNS = ["source", "target", "pair", "shots", "rank", "method", "mean", "std", "n_splits",
                   "significantly_better_than", "significantly_worse_than"]


def ranking_table(methods: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per pair and shot count, the methods ranked by mean target BACC (rank 1 = best; equal
    means share a rank), with the methods each is significantly better / worse than on the
    target (two-sided paired t-test by split, Holm within its family; Welch if no split is shared)."""
    target = methods[methods["domain"] == "target"]
    primary = comparisons[comparisons["test"].isin(stats.PRIMARY_TESTS) & (comparisons["domain"] == "target")]
    rows = []
    for (source, target_survey, shots), group in target.groupby(["source", "target", "shots"], sort=False):
        # means equal up to float rounding (sums of the same values in another order) share a rank
        group = group.assign(rank=group["mean"].round(12).rank(method="min", ascending=False).astype(int))
        tests = primary[(primary["source"] == source) & (primary["target"] == target_survey)
                        & (primary["shots"] == shots) & primary["significant"].fillna(False).astype(bool)]
        better: dict[str, list[str]] = {}
        worse: dict[str, list[str]] = {}
        for t in tests.itertuples():
            winner, loser = (t.method_a, t.method_b) if t.mean_diff > 0 else (t.method_b, t.method_a)
            better.setdefault(winner, []).append(loser)
            worse.setdefault(loser, []).append(winner)
        for r in group.sort_values(["rank", "method"], key=lambda c: c if c.name == "rank" else
                                   c.map({m: i for i, m in enumerate(METHODS)})).itertuples():
            rows.append({"source": source, "target": target_survey, "pair": pair_name(source, target_survey),
                         "shots": int(shots), "rank": int(r.rank), "method": r.method, "mean": r.mean,
                         "std": r.std, "n_splits": int(r.n_splits),
                         "significantly_better_than": " ".join(method_order(better.get(r.method, []))),
                         "significantly_worse_than": " ".join(method_order(worse.get(r.method, [])))})
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)


def ranking_matrix(ranking: pd.DataFrame) -> pd.DataFrame:
    """Wide view: a row per (pair, shots): ``MME 0.912 > FT 0.884 = S+T 0.884`` and the
    significant differences (``MME > S+T``)."""
    body = []
    for (source, target, shots), group in ranking.groupby(["source", "target", "shots"], sort=False):
        order, previous = [], None
        for r in group.itertuples():
            if previous is not None:
                order.append("=" if r.rank == previous else ">")
            order.append(f"{method_label(r.method)} {r.mean:.3f}")
            previous = r.rank
        significant = [f"{method_label(r.method)} > {method_label(loser)}" for r in group.itertuples()
                       for loser in str(r.significantly_better_than).split() if loser]
        body.append([pair_label(source, target), str(shots), " ".join(order), "; ".join(significant) or "none"])
    return pd.DataFrame(body, columns=["pair", "shots", "ranking by mean target BACC",
                                       "significant differences (paired t, Holm)"])


COST_GAIN_COLUMNS = ["source", "target", "pair", "method", "shots", "source_loss", "target_gain",
                     "source_loss_significant", "target_gain_significant", "n_splits"]


def cost_gain_table(versus_baseline: pd.DataFrame) -> pd.DataFrame:
    """Per pair, method and shot count: the mean source BACC loss against the baseline
    (baseline - method on the source's test part; positive = forgotten) and the mean target gain
    (method - baseline on the target's), both mean paired differences by split (the primary
    tests of ``stats/vs_baseline.csv``), and whether each is significant there (source:
    two-sided, target: one-sided, Holm)."""
    primary = versus_baseline[versus_baseline["test"].isin(stats.PRIMARY_TESTS)]
    rows = []
    for (method, source, target, shots), group in primary.groupby(["method", "source", "target", "shots"],
                                                                   sort=False):
        by_domain = {d: g.iloc[0] for d, g in group.groupby("domain")}
        if set(by_domain) != {"source", "target"}:
            continue
        src, tgt = by_domain["source"], by_domain["target"]
        rows.append({"source": source, "target": target, "pair": pair_name(source, target), "method": method,
                     "shots": int(shots), "source_loss": -float(src["mean_diff"]),
                     "target_gain": float(tgt["mean_diff"]),
                     "source_loss_significant": bool(_flag(src["significant"]) and src["mean_diff"] < 0),
                     "target_gain_significant": bool(_flag(tgt["significant"])),
                     "n_splits": int(min(src["n_a"], tgt["n_a"]))})
    return pd.DataFrame(rows, columns=COST_GAIN_COLUMNS)


# --- Markdown -------------------------------------------------------------------------------------


def _markdown_cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def to_markdown(frame: pd.DataFrame, index: bool = False) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    if index:
        frame = frame.reset_index()
    header = [_markdown_cell(str(c)) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_markdown_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"

