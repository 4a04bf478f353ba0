"""``rbda aggregate``: every table, statistic, figure and the report from the run files.

Inputs: a list of run JSON paths (baseline runs, and per adaptation method its
runs: for a lambda method such as MME the selected runs and all per-lambda
runs; told apart by ``method`` and the presence of ``selection``) and the
workflow's effective configuration. Of the configuration only the survey
names, the pairs, the adaptation methods and the shot counts are read, from
``study`` (the workflow's effective config) or the top level: ``surveys`` (a
list of names, or a mapping whose keys are the names, in study order),
``pairs``, ``methods`` (default: the published study's ``finetune, mme``) and
``shots``. The whole configuration is shown in the report. Runs of a method
that is not configured are an error naming them.

All outputs are first written into a staging folder inside ``out_dir`` and
moved into place only once every file has been written, so a failure leaves
no partial set of outputs behind.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

from rbda.atomic import atomic_path, write_text
from rbda.errors import InputFileError, RbdaError
from rbda.provenance import lock_provenance
from rbda.results import figures, findings, gallery, published, stats, tables
from rbda.results.naming import method_label, pair_label
from rbda.results.outputs import (ALL_EVALUATIONS, PAIR_TABLES_DIR, REPORT, expected_outputs, figure_path,
                                  method_pair_stats_name, method_pairs, pair_table_path, stats_path,
                                  study_methods, table_path)
from rbda.results.report import GUIDE, ReportSection, for_display, preformatted, render_report
from rbda.results.runs import Run, load_runs, read_runs_list
from rbda.study import study_pairs
from rbda.registry import ADAPTATION_METHODS

log = logging.getLogger(__name__)
PAIR_TABLE_NAME = re.compile(r"[a-z]+-to-[a-z]+\.(csv|md)")  # the schema's pair pattern
#: Statistics of one pair of methods (``stats/mme_vs_finetune.csv``), methods of the vocabulary.
METHOD_PAIR_STATS_NAME = re.compile(r"({0})_vs_({0})\.csv".format("|".join(ADAPTATION_METHODS)))


@dataclass(frozen=True)
class StudySettings:
    """What the aggregation reads from the configuration file."""

    config: dict
    surveys: list[str]
    pairs: list[tuple[str, str]]
    #: The configured adaptation methods, in the vocabulary's order.
    methods: list[str]
    #: The configured shot counts (``None``: not in the config; the runs' are used).
    shots: list[int] | None = None


def _study_section(config: dict) -> tuple[dict, str]:
    """The part holding ``surveys``/``pairs``: ``study`` of the effective config, or the top level."""
    study = config.get("study")
    if isinstance(study, dict) and "surveys" in study:
        return study, "study."
    return config, ""


def read_config(path: str | Path) -> StudySettings:
    """The configuration, its survey names (at least two, distinct) and its pairs.

    Pairs come from ``pairs`` beside ``surveys`` (a list of ``source-to-target``
    names); missing or null means all ordered pairs of distinct surveys.
    """
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except OSError:
        raise InputFileError(path, "a readable JSON configuration") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"valid JSON ({exc.msg})", where=f"line {exc.lineno}") from None
    if not isinstance(config, dict):
        raise InputFileError(path, "a JSON object with 'study.surveys' or 'surveys'")
    section, prefix = _study_section(config)
    if "surveys" not in section:
        raise InputFileError(path, "a JSON object with 'study.surveys' or 'surveys'")
    surveys = section["surveys"]
    names = list(surveys) if isinstance(surveys, (list, dict)) else []
    if len(names) < 2 or not all(isinstance(s, str) for s in names) or len(set(names)) != len(names):
        raise InputFileError(path, "a list (or mapping) of at least two distinct survey names",
                             where=f"{prefix}surveys")
    configured = section.get("pairs")
    if configured is not None and not isinstance(configured, list):
        raise InputFileError(path, "null or a list of source-to-target pair names", where=f"{prefix}pairs")
    try:
        pairs = study_pairs(names, configured, setting=f"{prefix}pairs")
    except RbdaError as exc:
        raise InputFileError(path, f"null or a list of source-to-target pairs of configured surveys "
                                   f"({exc})", where=f"{prefix}pairs") from None
    try:
        methods = study_methods(section.get("methods"), setting=f"{prefix}methods")
    except RbdaError as exc:
        raise InputFileError(path, f"a list of adaptation methods ({exc})", where=f"{prefix}methods") from None
    shots = section.get("shots")
    if shots is not None and (not isinstance(shots, list) or not shots
                              or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shots)):
        raise InputFileError(path, "null or a non-empty list of shot counts (integers >= 1)", where=f"{prefix}shots")
    return StudySettings(config=config, surveys=names, pairs=pairs, methods=methods,
                         shots=sorted(shots) if shots is not None else None)


def synthetic_surveys(config: dict) -> list[str]:
    """Surveys the configuration marks as synthetic (``surveys.<name>.source: synthetic``,
    at the top level or under ``config`` in the workflow's effective config)."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else config
    surveys = inner.get("surveys")
    if not isinstance(surveys, dict):
        return []
    return [name for name, settings in surveys.items()
            if isinstance(settings, dict) and settings.get("source") == "synthetic"]


@dataclass
class StudyResults:
    """Everything computed from the runs, before anything is written."""

    surveys: list[str]
    pairs: list[tuple[str, str]]
    methods_configured: list[str]
    evaluations: pd.DataFrame
    baseline: pd.DataFrame
    methods: pd.DataFrame
    scores: pd.DataFrame
    lambda_scores: pd.DataFrame
    lambdas: pd.DataFrame
    lambda_choices: pd.DataFrame
    selection_regret: pd.DataFrame
    method_pairs: pd.DataFrame
    vs_baseline: pd.DataFrame
    shots_to_beat: pd.DataFrame
    winners: pd.DataFrame
    ranking: pd.DataFrame
    cost_gain: pd.DataFrame
    findings: pd.DataFrame
    #: The shot counts the findings were computed on (the configured ones, else the runs').
    shot_counts: list[int]
    published_baseline: pd.DataFrame
    published_shots: pd.DataFrame
    published_selected: pd.DataFrame
    versions: pd.DataFrame
    training_stops: pd.DataFrame
    #: BACC beside ROC AUC, purity, completeness and FPR at 95%/99% completeness, per pair, method
    #: and shots on the target's test part (tables.survey_metrics_table).
    survey_metrics: pd.DataFrame


def versions_table(runs: list[Run]) -> pd.DataFrame:
    """Distinct ``versions`` objects of the runs, per method and backbone (each run's
    ``code_sha256`` covers its own method's and backbone's code), and how many runs carry each."""
    counts: dict[str, int] = {}
    for run in runs:
        scope = {"method": run.method, "model": run.data["hyperparameters"].get("model")}
        key = json.dumps({**scope, **run.data["versions"]}, sort_keys=True)
        counts[key] = counts.get(key, 0) + 1
    rows = [{**json.loads(key), "runs": n} for key, n in sorted(counts.items())]
    return pd.DataFrame(rows)


def mixed_code(versions: pd.DataFrame) -> bool:
    """Whether runs were made by different code: more than one shared-code hash, or more than one
    code hash among the runs of one method with one backbone (different methods' runs differ by design)."""
    if versions.empty or "code_sha256" not in versions:
        return False
    if "shared_code_sha256" in versions and versions["shared_code_sha256"].dropna().nunique() > 1:
        return True
    return bool((versions.dropna(subset=["code_sha256"]).groupby(["method", "model"], dropna=False)
                 ["code_sha256"].nunique() > 1).any())


def compute(runs: list[Run], surveys: list[str], pairs: list[tuple[str, str]],
            methods: list[str] | None = None, shots: list[int] | None = None) -> StudyResults:
    """All tables and tests, in memory; raises on an incomplete or inconsistent study.

    ``methods``: the configured adaptation methods (``None``: the published study's);
    runs of any other method are an error. ``shots``: the configured shot counts (the
    smallest is the 1 shot of claim 2); ``None``: the runs' shot counts.
    """
    methods = study_methods(methods)
    tables.check_methods(runs, methods)
    evaluations = tables.tidy_evaluations(runs)
    baseline_runs = tables.baseline_scores(evaluations)
    scores = tables.method_scores(evaluations)
    tables.check_study(baseline_runs, scores, surveys, pairs, methods, shots)
    baseline = tables.baseline_table(baseline_runs[baseline_runs["tested_on"].isin(surveys)], surveys)
    by_shots = tables.in_study_order(tables.methods_table(scores), surveys, ["method", "domain", "shots"])
    lambda_scores = tables.lambda_scores(runs)
    chosen = tables.chosen_lambdas(runs)
    lambdas = tables.in_study_order(tables.lambda_table(lambda_scores, chosen), surveys,
                                    ["method", "shots", "lambda"])
    lambda_choices = tables.in_study_order(tables.lambda_choices(chosen), surveys, ["method"])
    regret = tables.in_study_order(tables.selection_regret(evaluations), surveys, ["method"])
    pairwise = tables.in_study_order(stats.compare_method_pairs(scores, method_pairs(methods)), surveys,
                                     ["method_b", "method_a", "domain", "shots", "test"])
    vs_baseline = tables.in_study_order(stats.compare_with_baseline(scores, baseline_runs), surveys,
                                        ["method", "shots", "test"])
    to_beat = tables.shots_to_beat(by_shots, baseline, vs_baseline, pairs)
    winners = tables.in_study_order(tables.winners_table(by_shots, pairwise), surveys,
                                    ["domain", "method_b", "method_a"])
    ranking = tables.ranking_table(by_shots, pairwise)
    cost_gain = tables.in_study_order(tables.cost_gain_table(vs_baseline), surveys, ["method", "shots"])
    shot_counts = sorted(shots) if shots else sorted(int(n) for n in scores["shots"].unique())
    verdicts = findings.findings_table(baseline_runs, scores, surveys, pairs, methods, shot_counts,
                                       findings.split_size_ratios(runs))
    paper = published.load_published()
    return StudyResults(
        surveys=surveys, pairs=pairs, methods_configured=methods, evaluations=evaluations, baseline=baseline,
        methods=by_shots, scores=scores, lambda_scores=lambda_scores, lambdas=lambdas,
        lambda_choices=lambda_choices, selection_regret=regret, method_pairs=pairwise, vs_baseline=vs_baseline,
        shots_to_beat=to_beat,
        winners=winners, ranking=ranking, cost_gain=cost_gain, findings=verdicts, shot_counts=shot_counts,
        published_baseline=published.baseline_side_by_side(baseline, paper),
        published_shots=published.shots_to_beat_side_by_side(to_beat, paper),
        published_selected=published.selected_bacc_side_by_side(by_shots, paper),
        versions=versions_table(runs), training_stops=tables.training_stops(runs),
        survey_metrics=tables.in_study_order(tables.survey_metrics_table(evaluations, pairs), surveys,
                                             ["method", "shots"]),
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def _write_table(out: Path, name: str, long: pd.DataFrame, wide: pd.DataFrame | None = None,
                 title: str = "") -> None:
    """``tables/{name}.csv`` (long form) and ``.md`` (the wide view when given)."""
    _write_csv(long, out / table_path(name, "csv"))
    heading = f"# {title}\n\n" if title else ""
    write_text(out / table_path(name, "md"), heading + tables.to_markdown(wide if wide is not None else long))


def write_tables(results: StudyResults, out: Path) -> None:
    r = results
    _write_csv(r.evaluations, out / ALL_EVALUATIONS)
    _write_table(out, "baseline", r.baseline, tables.baseline_matrix(r.baseline, r.surveys).reset_index(),
                 "Baseline BACC (rows: trained on, columns: tested on), mean ± std over splits")
    _write_table(out, "methods_by_shots", r.methods, title=f"{_method_names(r)} BACC by shots (long form)")
    lambda_wide = tables.lambda_matrix(r.lambdas) if len(r.lambdas) else None
    _write_table(out, "lambda_selection", r.lambdas, lambda_wide,
                 "λ methods: target validation BACC per λ, and the λ chosen")
    _write_table(out, "lambda_choices", r.lambda_choices, for_display(r.lambda_choices),
                 "λ methods: the λ chosen per pair, how many choices were ties and how each was broken")
    _write_table(out, "selection_regret", r.selection_regret, for_display(r.selection_regret),
                 "λ methods: target test BACC of the selected runs minus that of the best single λ in hindsight")
    _write_table(out, "shots_to_beat", r.shots_to_beat, tables.shots_to_beat_matrix(r.shots_to_beat),
                 "Shots per class to beat the baseline on the target (significant in brackets)")
    _write_table(out, "winners", r.winners, title="Method a vs method b: who wins, from which shot count")
    _write_table(out, "ranking", r.ranking, tables.ranking_matrix(r.ranking),
                 "Methods ranked by mean target BACC per pair and shot count, with the significant differences")
    _write_table(out, "source_cost_target_gain", r.cost_gain, for_display(r.cost_gain),
                 "Per method and shot count: mean source BACC loss and mean target BACC gain against the baseline")
    _write_table(out, "survey_metrics", r.survey_metrics,
                 for_display(tables.survey_metrics_summary(r.survey_metrics)),
                 "BACC beside the metrics survey teams report, on the target's test part, mean over splits "
                 "and pairs (CSV: per pair); FPR and completeness at the thresholds chosen on validation "
                 "for 95% and 99% completeness; baseline: shots 0, trained on the source")
    _write_table(out, "findings", r.findings, findings.display(r.findings),
                 "The paper's claims as verdicts: effect, 95% interval, margin and test per pair or survey "
                 "and for the study (scope 'study', first)")
    _write_table(out, "published_baseline", r.published_baseline,
                 title="Baseline: this study vs the paper (meaningful only on the real surveys)")
    _write_table(out, "published_shots_to_beat", r.published_shots,
                 title="Shots to beat the baseline: this study vs the thesis (real surveys only)")
    _write_table(out, "published_selected_bacc", r.published_selected,
                 title="BACC quoted in the thesis vs this study (real surveys only)")
    for source, target in r.pairs:
        _write_csv(tables.pair_table_numeric(r.methods, source, target),
                   out / pair_table_path(source, target, "csv"))
        write_text(out / pair_table_path(source, target, "md"),
                   f"# {pair_label(source, target)}: BACC by shots, mean ± std over splits\n\n"
                   + tables.to_markdown(tables.pair_table(r.methods, r.baseline, source, target)))
    _write_csv(r.method_pairs, out / stats_path("method_pairs"))
    for a, b in method_pairs(r.methods_configured):
        one = r.method_pairs[(r.method_pairs["method_a"] == a) & (r.method_pairs["method_b"] == b)]
        _write_csv(one, out / stats_path(method_pair_stats_name(a, b)))
    _write_csv(r.vs_baseline, out / stats_path("vs_baseline"))


def _method_names(r: StudyResults) -> str:
    """``FT, MME and S+T``: the configured methods in words."""
    labels = [method_label(m) for m in r.methods_configured]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def write_figures(results: StudyResults, out: Path) -> None:
    r = results
    figures.save_figure(figures.findings_forest(r.findings), out, "findings_forest")
    figures.save_figure(figures.baseline_heatmap(r.baseline, r.surveys), out, "baseline_heatmap")
    figures.save_figure(figures.bacc_vs_shots(r.methods, r.baseline, r.pairs), out, "bacc_vs_shots")
    figures.save_figure(figures.boxplots(r.scores, r.baseline, r.pairs), out, "boxplots")
    figures.save_figure(figures.source_cost_vs_target_gain(r.cost_gain, r.pairs), out,
                        "source_cost_vs_target_gain")
    figures.save_figure(figures.lambda_curves(r.lambda_scores, r.pairs), out, "lambda_curves")


STATS_COLUMNS = ["source", "target", "shots", "domain", "test", "alternative", "n_a", "n_b", "mean_diff",
                 "ci_low", "ci_high", "p", "p_holm", "family_size", "significant", "note"]


def lock_sentence(lock: dict) -> str:
    """What the report says about the environment that made it (rbda.provenance.lock_provenance)."""
    if lock["lock_sha256"] is None:
        return "This report was made outside a source checkout: no <code>requirements/lock.txt</code> to name."
    state = ("every locked package installed at its locked version" if lock["lock_matches_installed"]
             else "<b>installed packages differ from the lock</b> (<code>python -m rbda.provenance --check</code> "
                  "names them)")
    return (f"This report was made with <code>requirements/lock.txt</code> sha256 "
            f"<code>{lock['lock_sha256']}</code>: {state}.")


def _guide_section() -> ReportSection:
    """The report's section "How to read this report"."""
    guide = ReportSection("How to read this report", "guide")
    guide.raw(f'<div class="guide">{GUIDE}</div>')
    return guide


def _findings_section(r: StudyResults, png) -> ReportSection:
    """The report's section "The study's findings"."""
    verdicts = ReportSection("The study's findings", "findings")
    few = findings.too_few_splits(r.findings)
    if few is not None:
        verdicts.paragraph(
            f"<b>{few} splits cannot test the paper's claims</b>: a verdict needs at least {findings.MIN_SPLITS} "
            "splits, so every verdict below is <i>not testable</i>. The effects and intervals are shown; they "
            "describe these runs and are no evidence for or against a claim.", css="warning")
    verdicts.paragraph(
        "The paper's claims, each with its direction and margin (the shaded region of the figure), tested for the "
        "study as a whole (a t interval over the pairs' or surveys' mean effects) and per pair or survey (the "
        "corrected resampled t interval over splits, Nadeau &amp; Bengio 2003, since the splits resample one pool). "
        "A claim <i>holds</i> when its 95% interval lies inside the claimed region, is <i>contradicted</i> when "
        "the interval lies entirely outside it, and is <i>inconclusive</i> otherwise; claims made \"at every "
        "shot count\" must hold at each (an intersection, no correction) and are contradicted by one shot count "
        "at the Bonferroni level. The table <code>tables/findings.csv</code> has every row, with p and the "
        "Wilcoxon test's p beside it.")
    verdicts.table(findings.summary(r.findings), caption="Study-level verdicts (per scope: how many pairs or "
                   "surveys got each verdict)")
    verdicts.figure(png("findings_forest"), "Each claim's effect and 95% interval per pair or survey, the study "
                    "on top (diamond); shaded: the claimed region; colour: the verdict (green holds, orange "
                    "contradicted, grey inconclusive, light grey not testable). Intersection claims show their "
                    "decisive shot count.")
    verdicts.table(findings.display(r.findings), caption="Every claim per pair or survey", collapsed=True)
    return verdicts


def _baseline_section(r: StudyResults, png) -> ReportSection:
    """The report's section "Baseline"."""
    base = ReportSection("Baseline", "baseline")
    base.table(tables.baseline_matrix(r.baseline, r.surveys).reset_index())
    base.figure(png("baseline_heatmap"), "Baseline BACC: rows trained on, columns tested on.")
    return base


def _by_shots_section(r: StudyResults, png) -> ReportSection:
    """The report's section on the methods' BACC by shots."""
    curves = ReportSection(f"{_method_names(r)} by shots", "by-shots")
    curves.figure(png("bacc_vs_shots"), "BACC vs shots per class, mean ± std over splits; per pair "
                  "the left panel is the source's test part, the right the target's; dashed: baseline.")
    curves.figure(png("boxplots"), "The same runs as distributions over splits.")
    for source, target in r.pairs:
        curves.table(tables.pair_table(r.methods, r.baseline, source, target),
                     caption=f"{pair_label(source, target)}: BACC by shots", collapsed=True)
    return curves


def _shots_to_beat_section(r: StudyResults) -> ReportSection:
    """The report's section "Shots to beat the baseline"."""
    beat = ReportSection("Shots to beat the baseline", "shots-to-beat")
    beat.table(tables.shots_to_beat_matrix(r.shots_to_beat))
    untestable = r.shots_to_beat[r.shots_to_beat["note"] != ""]
    if len(untestable):
        beat.table(for_display(untestable[["source", "target", "method", "note"]]),
                   caption="Why some pairs are not testable", collapsed=True)
    return beat


def _ranking_section(r: StudyResults, png) -> ReportSection:
    """The report's section "Ranking of the methods"."""
    ranking = ReportSection("Ranking of the methods", "ranking")
    ranking.paragraph("Per pair and shot count, the methods by mean target BACC (equal means share a rank), "
                      "and the differences that are significant (two-sided paired t-test by split, Holm within "
                      "each comparison's family: one per pair, domain, pair of methods and test).")
    ranking.table(tables.ranking_matrix(r.ranking))
    ranking.figure(png("source_cost_vs_target_gain"),
                   "Source cost vs target gain per pair: one point per method and shot count (labelled with "
                   "the shot count); x: mean source BACC loss against the baseline, y: mean target gain; "
                   "upper left is best.")
    ranking.table(for_display(r.cost_gain), caption="Source loss and target gain per method and shots",
                  collapsed=True)
    return ranking


def _significance_section(r: StudyResults) -> ReportSection:
    """The report's section "Method vs method and significance"."""
    significance = ReportSection("Method vs method and significance", "significance")
    significance.paragraph("The study's headline comparison is MME vs FT; every other pair of configured "
                           "methods is tested the same way.")
    significance.table(for_display(r.winners.drop(columns=["pair"])))
    significance.paragraph("<i>significant_at_shots</i>: the paired t-test by split, Holm-adjusted p &lt; 0.05 within "
                           "its family. Full test tables below and in <code>stats/</code>.")
    for a, b in method_pairs(r.methods_configured):
        one = r.method_pairs[(r.method_pairs["method_a"] == a) & (r.method_pairs["method_b"] == b)]
        significance.table(for_display(one[STATS_COLUMNS]),
                           caption=f"{method_label(a)} − {method_label(b)}, all tests", collapsed=True)
    significance.table(for_display(r.vs_baseline[["method", *STATS_COLUMNS]]),
                       caption="Method − baseline on the target (one-sided) and on the source (two-sided), "
                               "all tests", collapsed=True)
    return significance


def _lambda_section(r: StudyResults, png) -> ReportSection:
    """The report's section "Choice of λ (λ methods)"."""
    lambdas = ReportSection("Choice of λ (λ methods)", "lambda")
    lambdas.figure(png("lambda_curves"), "Target validation BACC (the selection criterion) vs shots, "
                   "one line per λ, mean over splits.")
    if len(r.lambda_choices):
        lambdas.table(for_display(r.lambda_choices),
                      caption="λ chosen per pair (selections per λ), choices made, how many were ties and how "
                              "they were broken (a per-pair choice counts once)")
    if len(r.selection_regret):
        lambdas.table(for_display(r.selection_regret),
                      caption="What selection costs: mean target test BACC of the selected runs minus that of "
                              "the single λ best on the test parts in hindsight (≤ 0 for a per-pair rule; per_split can "
                              "pick per group and exceed it)")
    if len(r.lambdas):
        lambdas.table(tables.lambda_matrix(r.lambdas), caption="Mean target validation BACC per λ and shots")
    else:
        lambdas.paragraph("No per-λ runs (MME, ENT) were given, so there is no λ table.")
    return lambdas


def _stopping_section(r: StudyResults) -> ReportSection:
    """The report's section "How the runs stopped"."""
    stops = ReportSection("How the runs stopped", "stopping")
    stops.paragraph("Per method (MME: every per-λ run): runs stopped by early stopping (patience) and "
                    "by the <code>max_epochs</code> cap, which ends a run that was still improving; and "
                    "where the kept epoch lies (0: the starting model, only with "
                    "<code>epoch_zero_candidate</code>; 1: after a single epoch).")
    stops.table(for_display(r.training_stops))
    return stops


def _survey_metrics_section(r: StudyResults) -> ReportSection:
    """The report's section "What survey teams report": BACC beside ROC AUC, purity, completeness and
    the false-positive rate at fixed completeness (thresholds from validation)."""
    section = ReportSection("What survey teams report", "survey-metrics")
    section.paragraph(
        "BACC is the study's metric; survey teams pick a threshold and report purity (precision of real), "
        "completeness (recall of real), ROC AUC and the false-positive rate at a fixed completeness (Rubin: "
        "purity and completeness at its cut; ATLAS: FPR at 1% missed detections; ZTF: ROC AUC and FPR/FNR). "
        "On each pair's target test part, mean over splits and then over pairs: purity and completeness of "
        "the model's own call (p_real &gt; 0.5), and the FPR and completeness reached at the thresholds chosen "
        "on the target's validation part for 95% and 99% completeness (so the reached completeness can fall "
        "short of the target; with few validation items the 99% threshold is coarse). Baseline: shots 0, "
        "the source's model on the target. Per pair: <code>tables/survey_metrics.csv</code>.")
    summary = tables.survey_metrics_summary(r.survey_metrics)
    if summary.empty or summary["roc_auc"].isna().all():
        section.paragraph("The runs do not record these metrics (run files written before rbda recorded "
                          "them): rerun the training to have them.")
        return section
    section.table(for_display(summary.round(3)))
    return section


def _published_section(r: StudyResults, config: dict) -> ReportSection:
    """The report's section "Against the paper"."""
    paper = ReportSection("Against the paper", "published")
    synthetic = synthetic_surveys(config)
    if synthetic:
        paper.paragraph(f"<b>This study used synthetic data</b> for {html.escape(', '.join(synthetic))} "
                        "(configuration: <code>source: synthetic</code>): the comparison below is "
                        "<b>not meaningful</b>; it only shows the layout.", css="warning")
    paper.paragraph("The published numbers come from the <b>real</b> HiTS, DES, ATLAS and ZTF data "
                    "(10 splits). The side-by-side below is meaningful <b>only when this study ran on "
                    "the real surveys</b>; on synthetic data the survey names are shared but the data "
                    "are not, and any agreement or disagreement says nothing.", css="warning")
    paper.table(for_display(r.published_baseline), caption="Baseline BACC: this study vs the paper")
    paper.table(for_display(r.published_shots.drop(columns=["pair"])),
                caption="Shots to beat the baseline: this study vs the thesis")
    paper.table(for_display(r.published_selected),
                caption="BACC values quoted in the thesis (FT / MME at given shots) vs this study")
    return paper


def _configuration_section(r: StudyResults, config: dict) -> ReportSection:
    """The report's section "Configuration and versions"."""
    setup = ReportSection("Configuration and versions", "configuration")
    setup.table(r.versions, caption="Package versions recorded in the run files (runs: how many)")
    if mixed_code(r.versions):
        setup.paragraph("<b>These runs were made by different versions of the learning code</b> "
                        "(<code>code_sha256</code> above): results made by different code are mixed in "
                        "this report (<code>rerun_on_code_change: false</code>, or runs copied in).",
                        css="warning")
    setup.paragraph(lock_sentence(lock_provenance()))
    setup.paragraph(f"{len(r.evaluations['path'].unique())} run files; configuration as given:")
    setup.raw(preformatted(config))
    return setup


def build_report(results: StudyResults, config: dict, out: Path, extra: list[ReportSection] = ()) -> str:
    """report.html's text: the study's sections, then ``extra`` (sections of optional targets), then
    the configuration."""
    png = lambda name: out / figure_path(name, "png")  # noqa: E731
    study = [
        _guide_section(),
        _findings_section(results, png),
        _baseline_section(results, png),
        _by_shots_section(results, png),
        _shots_to_beat_section(results),
        _ranking_section(results, png),
        _significance_section(results),
        _lambda_section(results, png),
        _stopping_section(results),
        _survey_metrics_section(results),
        _published_section(results, config),
    ]
    return render_report("rbda: cross-survey domain adaptation results",
                         [*study, *extra, _configuration_section(results, config)])


@contextlib.contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """A temporary folder inside ``out_dir``, removed afterwards whatever happens."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".aggregate-", dir=out_dir))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def remove_stale_pair_tables(out_dir: Path, expected: list[str]) -> list[str]:
    """Delete per-pair tables of pairs, and statistics of pairs of methods, no longer configured;
    return their relative paths.

    Only files named exactly like this command's own (``tables/pairs/SOURCE-to-TARGET.csv|md``,
    survey names as the config schema allows them) are considered, so a stale table cannot pass
    for a result of the current study and a user's ``des-to-hits.backup.csv`` stays.
    """
    keep = set(expected)
    stale = []
    candidates = [(out_dir / PAIR_TABLES_DIR, PAIR_TABLE_NAME), (out_dir / "stats", METHOD_PAIR_STATS_NAME)]
    for folder, pattern in candidates:
        stale += _remove_unexpected(out_dir, folder, pattern, keep)
    return stale


def _remove_unexpected(out_dir: Path, folder: Path, pattern: re.Pattern, keep: set[str]) -> list[str]:
    stale = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        relative = str(path.relative_to(out_dir))
        if not pattern.fullmatch(path.name):
            continue
        if path.is_file() and relative not in keep:
            path.unlink()
            stale.append(relative)
    return stale


def aggregate(runs_list: str | Path, config_path: str | Path, out_dir: str | Path,
              stamp_classifier: str | Path | None = None) -> list[Path]:
    """Write all outputs under ``out_dir``; return their paths. ``stamp_classifier``: the folder of
    ``rbda stamp-classifier``'s outputs, shown as a section of the report."""
    settings = read_config(config_path)
    runs = load_runs(read_runs_list(runs_list))
    results = compute(runs, settings.surveys, settings.pairs, settings.methods, settings.shots)
    out_dir = Path(out_dir)
    galleries = bool(gallery.data_paths(settings.config))  # stamp galleries when the data is named
    expected = expected_outputs(settings.surveys, settings.pairs, settings.methods, galleries=galleries)
    with staging_dir(out_dir) as stage:
        write_tables(results, stage)
        write_figures(results, stage)
        extra = [gallery.write_study_galleries(runs, settings.surveys, settings.config, stage)] if galleries else []
        if stamp_classifier is not None:
            from rbda.results.stamp_classifier import report_section

            extra.append(report_section(stamp_classifier))
        write_text(stage / REPORT, build_report(results, settings.config, stage, extra))
        written = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
        if written != sorted(expected):
            raise AssertionError(f"outputs differ from expected_outputs(): {sorted(set(written) ^ set(expected))}")
        for relative in expected:
            (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / relative, out_dir / relative)
    stale = remove_stale_pair_tables(out_dir, expected)
    if stale:
        log.info("removed %d per-pair table(s) or method-pair statistics no longer configured: %s", len(stale),
                 ", ".join(stale))
    log.info("wrote %d files under %s from %d runs", len(expected), out_dir, len(runs))
    return [out_dir / p for p in expected]
