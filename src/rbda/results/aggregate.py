"""``rbda aggregate``: every table, statistic, figure and the report from the run files.

Inputs: a list of run JSON paths (baseline, finetune, selected MME and all
per-lambda MME runs; told apart by ``method`` and the presence of
``selection``) and the workflow's effective configuration. Of the
configuration only the survey names are read, from ``study.surveys`` (the
workflow's effective config) or a top-level ``surveys``: a list of names, or
a mapping whose keys are the names, in study order. The whole configuration
is shown in the report.

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
from rbda.results import figures, gallery, published, stats, tables
from rbda.results.naming import pair_label
from rbda.results.outputs import (ALL_EVALUATIONS, PAIR_TABLES_DIR, REPORT, expected_outputs, figure_path,
                                  pair_table_path, stats_path, table_path)
from rbda.results.report import GUIDE, ReportSection, for_display, preformatted, render_report
from rbda.results.runs import Run, load_runs, read_runs_list
from rbda.study import study_pairs

log = logging.getLogger(__name__)
PAIR_TABLE_NAME = re.compile(r"[a-z]+-to-[a-z]+\.(csv|md)")  # the schema's pair pattern


@dataclass(frozen=True)
class StudySettings:
    """What the aggregation reads from the configuration file."""

    config: dict
    surveys: list[str]
    pairs: list[tuple[str, str]]


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
    return StudySettings(config=config, surveys=names, pairs=pairs)


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
    evaluations: pd.DataFrame
    baseline: pd.DataFrame
    methods: pd.DataFrame
    scores: pd.DataFrame
    lambda_scores: pd.DataFrame
    lambdas: pd.DataFrame
    lambda_choices: pd.DataFrame
    mme_vs_finetune: pd.DataFrame
    vs_baseline: pd.DataFrame
    shots_to_beat: pd.DataFrame
    winners: pd.DataFrame
    published_baseline: pd.DataFrame
    published_shots: pd.DataFrame
    published_selected: pd.DataFrame
    versions: pd.DataFrame
    training_stops: pd.DataFrame


def versions_table(runs: list[Run]) -> pd.DataFrame:
    """Distinct ``versions`` objects of the runs and how many runs carry each."""
    counts: dict[str, int] = {}
    for run in runs:
        key = json.dumps(run.data["versions"], sort_keys=True)
        counts[key] = counts.get(key, 0) + 1
    rows = [{**json.loads(key), "runs": n} for key, n in sorted(counts.items())]
    return pd.DataFrame(rows)


def compute(runs: list[Run], surveys: list[str], pairs: list[tuple[str, str]]) -> StudyResults:
    """All tables and tests, in memory; raises on an incomplete or inconsistent study."""
    evaluations = tables.tidy_evaluations(runs)
    baseline_runs = tables.baseline_scores(evaluations)
    scores = tables.method_scores(evaluations)
    tables.check_study(baseline_runs, scores, surveys, pairs)
    baseline = tables.baseline_table(baseline_runs[baseline_runs["tested_on"].isin(surveys)], surveys)
    methods = tables.in_study_order(tables.methods_table(scores), surveys, ["method", "domain", "shots"])
    lambda_scores = tables.lambda_scores(runs)
    chosen = tables.chosen_lambdas(runs)
    lambdas = tables.in_study_order(tables.lambda_table(lambda_scores, chosen), surveys, ["shots", "lambda"])
    lambda_choices = tables.in_study_order(tables.lambda_choices(chosen), surveys, [])
    mme_vs_finetune = tables.in_study_order(stats.compare_mme_with_finetune(scores), surveys,
                                            ["domain", "shots", "test"])
    vs_baseline = tables.in_study_order(stats.compare_with_baseline(scores, baseline_runs), surveys,
                                        ["method", "shots", "test"])
    shots = tables.shots_to_beat(methods, baseline, vs_baseline, pairs)
    winners = tables.in_study_order(tables.winners_table(methods, mme_vs_finetune), surveys, ["domain"])
    paper = published.load_published()
    return StudyResults(
        surveys=surveys, pairs=pairs, evaluations=evaluations, baseline=baseline, methods=methods, scores=scores,
        lambda_scores=lambda_scores, lambdas=lambdas, lambda_choices=lambda_choices, mme_vs_finetune=mme_vs_finetune,
        vs_baseline=vs_baseline, shots_to_beat=shots, winners=winners,
        published_baseline=published.baseline_side_by_side(baseline, paper),
        published_shots=published.shots_to_beat_side_by_side(shots, paper),
        published_selected=published.selected_bacc_side_by_side(methods, paper),
        versions=versions_table(runs), training_stops=tables.training_stops(runs),
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
    _write_table(out, "methods_by_shots", r.methods, title="FT and MME BACC by shots (long form)")
    lambda_wide = tables.lambda_matrix(r.lambdas) if len(r.lambdas) else None
    _write_table(out, "lambda_selection", r.lambdas, lambda_wide,
                 "MME target validation BACC per λ, and the λ chosen")
    _write_table(out, "lambda_choices", r.lambda_choices, for_display(r.lambda_choices),
                 "MME: the λ chosen per pair, how many choices were ties and how each was broken")
    _write_table(out, "shots_to_beat", r.shots_to_beat, tables.shots_to_beat_matrix(r.shots_to_beat),
                 "Shots per class to beat the baseline on the target (significant in brackets)")
    _write_table(out, "winners", r.winners, title="MME vs FT: who wins, from which shot count")
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
    _write_csv(r.mme_vs_finetune, out / stats_path("mme_vs_finetune"))
    _write_csv(r.vs_baseline, out / stats_path("vs_baseline"))


def write_figures(results: StudyResults, out: Path) -> None:
    r = results
    figures.save_figure(figures.baseline_heatmap(r.baseline, r.surveys), out, "baseline_heatmap")
    figures.save_figure(figures.bacc_vs_shots(r.methods, r.baseline, r.pairs), out, "bacc_vs_shots")
    figures.save_figure(figures.boxplots(r.scores, r.baseline, r.pairs), out, "boxplots")
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


def build_report(results: StudyResults, config: dict, out: Path, extra: list[ReportSection] = ()) -> str:
    r = results
    png = lambda name: out / figure_path(name, "png")  # noqa: E731

    guide = ReportSection("How to read this report", "guide")
    guide.raw(f'<div class="guide">{GUIDE}</div>')

    base = ReportSection("Baseline", "baseline")
    base.table(tables.baseline_matrix(r.baseline, r.surveys).reset_index())
    base.figure(png("baseline_heatmap"), "Baseline BACC: rows trained on, columns tested on.")

    curves = ReportSection("FT and MME by shots", "by-shots")
    curves.figure(png("bacc_vs_shots"), "BACC vs shots per class, mean ± std over splits; per pair "
                  "the left panel is the source's test part, the right the target's; dashed: baseline.")
    curves.figure(png("boxplots"), "The same runs as distributions over splits.")
    for source, target in r.pairs:
        curves.table(tables.pair_table(r.methods, r.baseline, source, target),
                     caption=f"{pair_label(source, target)}: BACC by shots", collapsed=True)

    beat = ReportSection("Shots to beat the baseline", "shots-to-beat")
    beat.table(tables.shots_to_beat_matrix(r.shots_to_beat))
    untestable = r.shots_to_beat[r.shots_to_beat["note"] != ""]
    if len(untestable):
        beat.table(for_display(untestable[["source", "target", "method", "note"]]),
                   caption="Why some pairs are not testable", collapsed=True)

    significance = ReportSection("MME vs FT and significance", "significance")
    significance.table(for_display(r.winners.drop(columns=["pair"])))
    significance.paragraph("<i>significant_at_shots</i>: the paired t-test by split, Holm-adjusted p &lt; 0.05 within "
                           "its family. Full test tables below and in <code>stats/</code>.")
    significance.table(for_display(r.mme_vs_finetune[STATS_COLUMNS]), caption="MME − FT, all tests",
                       collapsed=True)
    significance.table(for_display(r.vs_baseline[["method", *STATS_COLUMNS]]),
                       caption="Method − baseline on the target (one-sided) and on the source (two-sided), "
                               "all tests", collapsed=True)

    lambdas = ReportSection("Choice of λ (MME)", "lambda")
    lambdas.figure(png("lambda_curves"), "Target validation BACC (the selection criterion) vs shots, "
                   "one line per λ, mean over splits.")
    if len(r.lambda_choices):
        lambdas.table(for_display(r.lambda_choices),
                      caption="λ chosen per pair (selections per λ), ties and how they were broken")
    if len(r.lambdas):
        lambdas.table(tables.lambda_matrix(r.lambdas), caption="Mean target validation BACC per λ and shots")
    else:
        lambdas.paragraph("No per-λ MME runs were given, so there is no λ table.")

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

    stops = ReportSection("How the runs stopped", "stopping")
    stops.paragraph("Per method (MME: every per-λ run): runs stopped by early stopping (patience) and "
                    "by the <code>max_epochs</code> cap, which ends a run that was still improving; and "
                    "where the kept epoch lies (0: the starting model, only with "
                    "<code>epoch_zero_candidate</code>; 1: after a single epoch).")
    stops.table(for_display(r.training_stops))

    setup = ReportSection("Configuration and versions", "configuration")
    setup.table(r.versions, caption="Package versions recorded in the run files (runs: how many)")
    codes = r.versions["code_sha256"].dropna().unique() if "code_sha256" in r.versions else []
    if len(codes) > 1:
        setup.paragraph(f"<b>These runs were made by {len(codes)} different versions of the learning code</b> "
                        "(<code>code_sha256</code> above): results made by different code are mixed in "
                        "this report (<code>rerun_on_code_change: false</code>, or runs copied in).",
                        css="warning")
    setup.paragraph(lock_sentence(lock_provenance()))
    setup.paragraph(f"{len(r.evaluations['path'].unique())} run files; configuration as given:")
    setup.raw(preformatted(config))

    return render_report("rbda: cross-survey domain adaptation results",
                         [guide, base, curves, beat, significance, lambdas, stops, paper, *extra, setup])


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
    """Delete per-pair tables of pairs no longer configured; return their relative paths.

    Only files named exactly like this command's own (``tables/pairs/SOURCE-to-TARGET.csv|md``,
    survey names as the config schema allows them) are considered, so a stale table cannot pass
    for a result of the current study and a user's ``des-to-hits.backup.csv`` stays.
    """
    pairs_dir = out_dir / PAIR_TABLES_DIR
    keep = set(expected)
    stale = []
    for path in sorted(pairs_dir.glob("*")) if pairs_dir.is_dir() else []:
        relative = str(path.relative_to(out_dir))
        if not PAIR_TABLE_NAME.fullmatch(path.name):
            continue
        if path.is_file() and relative not in keep:
            path.unlink()
            stale.append(relative)
    return stale


def aggregate(runs_list: str | Path, config_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write all outputs under ``out_dir``; return their paths."""
    settings = read_config(config_path)
    runs = load_runs(read_runs_list(runs_list))
    results = compute(runs, settings.surveys, settings.pairs)
    out_dir = Path(out_dir)
    galleries = bool(gallery.data_paths(settings.config))  # stamp galleries when the data is named
    expected = expected_outputs(settings.surveys, settings.pairs, galleries=galleries)
    with staging_dir(out_dir) as stage:
        write_tables(results, stage)
        write_figures(results, stage)
        extra = [gallery.write_study_galleries(runs, settings.surveys, settings.config, stage)] if galleries else []
        write_text(stage / REPORT, build_report(results, settings.config, stage, extra))
        written = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
        if written != sorted(expected):
            raise AssertionError(f"outputs differ from expected_outputs(): {sorted(set(written) ^ set(expected))}")
        for relative in expected:
            (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / relative, out_dir / relative)
    stale = remove_stale_pair_tables(out_dir, expected)
    if stale:
        log.info("removed %d per-pair table(s) of pairs no longer configured: %s", len(stale), ", ".join(stale))
    log.info("wrote %d files under %s from %d runs", len(expected), out_dir, len(runs))
    return [out_dir / p for p in expected]
