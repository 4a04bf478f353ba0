"""The files ``rbda aggregate`` writes, as a function of the configured surveys, pairs and methods.

Light module (standard library only) so that the workflow can import it from
``rules/report_setup.smk`` to declare the aggregation rule's outputs::

    from rbda.results.outputs import expected_outputs
    expected_outputs(["hits", "des", "ztf", "atlas"])  # paths relative to --out-dir
    expected_outputs(SURVEYS, [("des", "hits")])       # a configured subset of pairs
    expected_outputs(SURVEYS, None, methods=["finetune", "mme", "st"])

The set depends only on the surveys, pairs and adaptation methods, never on the
run data. With the published study's methods (``rbda.study.STUDY_METHODS``, the
default) it is the published study's set plus the method-generic tables.
"""

from __future__ import annotations

from itertools import combinations
from typing import Iterable

from rbda.errors import SettingError
from rbda.study import STUDY_METHODS, pair_name, study_pairs
from rbda.registry import ADAPTATION_METHODS

#: Tables written as both CSV and Markdown, under ``tables/``.
TABLES = ("baseline", "methods_by_shots", "lambda_selection", "lambda_choices", "selection_regret", "shots_to_beat",
          "winners",
          "ranking", "source_cost_target_gain", "survey_metrics", "findings",
          "published_baseline", "published_shots_to_beat", "published_selected_bacc")
#: Statistics (CSV only), under ``stats/``, whatever the methods: every pairwise method comparison in
#: one file, and every method against the baseline.
STATS = ("method_pairs", "vs_baseline")
#: Figures written as PNG and PDF, under ``figures/``.
FIGURES = ("findings_forest", "baseline_heatmap", "bacc_vs_shots", "boxplots", "source_cost_vs_target_gain", "lambda_curves")
#: Every evaluation of every run, one row each (CSV only).
ALL_EVALUATIONS = "tables/all_evaluations.csv"
REPORT = "report.html"
#: Stamp galleries (PNG), under ``figures/gallery/``, one of each kind per survey: examples of every
#: class, and the first split's baseline's most confident errors on its own test part
#: (rbda.results.gallery; written when the configuration names the preprocessed data, ``study.data``).
GALLERIES = ("stamps", "errors")
GALLERY_DIR = "figures/gallery"
#: One table per (source, target) pair, under this folder.
PAIR_TABLES_DIR = "tables/pairs"


def table_path(name: str, ext: str) -> str:
    return f"tables/{name}.{ext}"


def pair_table_path(source: str, target: str, ext: str) -> str:
    return f"{PAIR_TABLES_DIR}/{pair_name(source, target)}.{ext}"


def stats_path(name: str) -> str:
    return f"stats/{name}.csv"


def figure_path(name: str, ext: str) -> str:
    return f"figures/{name}.{ext}"


def study_methods(methods: Iterable[str] | None, setting: str = "methods") -> list[str]:
    """The configured adaptation methods in the vocabulary's order (``rbda.study.ADAPTATION_METHODS``);
    ``None`` = the published study's. A :class:`SettingError` names ``setting`` for an unknown,
    repeated or missing method."""
    if methods is None:
        return list(STUDY_METHODS)
    if isinstance(methods, (str, bytes)):
        raise SettingError(setting, f"a list of adaptation methods among {', '.join(ADAPTATION_METHODS)}", methods)
    given = list(methods)
    unknown = [m for m in given if m not in ADAPTATION_METHODS]
    if not given or unknown or len(set(given)) != len(given):
        raise SettingError(setting, f"a non-empty list of distinct adaptation methods among "
                                    f"{', '.join(ADAPTATION_METHODS)}", given)
    return [m for m in ADAPTATION_METHODS if m in given]


def method_pairs(methods: Iterable[str] | None) -> list[tuple[str, str]]:
    """Every pair of configured methods as (a, b) for the comparison ``a - b``: the later method
    in the vocabulary's order first, so the study's headline comparison is ``("mme", "finetune")``."""
    ordered = study_methods(methods)
    return [(b, a) for a, b in combinations(ordered, 2)]


def method_pair_stats_name(a: str, b: str) -> str:
    """``mme_vs_finetune``: the statistics file of the comparison ``a - b``."""
    return f"{a}_vs_{b}"


def gallery_path(survey: str, kind: str) -> str:
    return f"{GALLERY_DIR}/{survey}_{kind}.png"


def expected_outputs(surveys: list[str], pairs: list[tuple[str, str]] | None = None,
                     methods: Iterable[str] | None = None, galleries: bool = False) -> list[str]:
    """Relative paths of every file ``rbda aggregate`` writes for these surveys, pairs
    (``pairs``: (source, target) tuples; ``None`` = all ordered pairs) and adaptation
    methods (``None`` = the published study's ``finetune, mme``): one statistics file per
    pair of methods (``stats/mme_vs_finetune.csv`` for the published study) beside the fixed set;
    ``galleries``: the configuration names the preprocessed data, so the stamp galleries are drawn."""
    paths = [table_path(name, ext) for name in TABLES for ext in ("csv", "md")]
    paths += [pair_table_path(s, t, ext) for s, t in study_pairs(surveys, pairs) for ext in ("csv", "md")]
    paths.append(ALL_EVALUATIONS)
    paths += [stats_path(method_pair_stats_name(a, b)) for a, b in method_pairs(methods)]
    paths += [stats_path(name) for name in STATS]
    paths += [figure_path(name, ext) for name in FIGURES for ext in ("png", "pdf")]
    paths += [gallery_path(survey, kind) for survey in surveys for kind in GALLERIES] if galleries else []
    paths.append(REPORT)
    return paths
