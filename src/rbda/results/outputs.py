"""The files ``rbda aggregate`` writes, as a function of the configured surveys.

Light module (standard library only) so that the workflow can import it from
``rules/common.smk`` to declare the aggregation rule's outputs::

    from rbda.results.outputs import expected_outputs
    expected_outputs(["hits", "des", "ztf", "atlas"])  # paths relative to --out-dir
    expected_outputs(SURVEYS, [("des", "hits")])       # a configured subset of pairs

The set depends only on the surveys and pairs, never on the run data.
"""

from __future__ import annotations

from rbda.study import pair_name, study_pairs

#: Tables written as both CSV and Markdown, under ``tables/``.
TABLES = ("baseline", "methods_by_shots", "lambda_selection", "lambda_choices", "shots_to_beat", "winners",
          "published_baseline", "published_shots_to_beat", "published_selected_bacc")
#: Statistics (CSV only), under ``stats/``.
STATS = ("mme_vs_finetune", "vs_baseline")
#: Figures written as PNG and PDF, under ``figures/``.
FIGURES = ("baseline_heatmap", "bacc_vs_shots", "boxplots", "lambda_curves")
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


def gallery_path(survey: str, kind: str) -> str:
    return f"{GALLERY_DIR}/{survey}_{kind}.png"


def expected_outputs(surveys: list[str], pairs: list[tuple[str, str]] | None = None,
                     galleries: bool = False) -> list[str]:
    """Relative paths of every file ``rbda aggregate`` writes for these surveys and pairs
    (``pairs``: (source, target) tuples; ``None`` = all ordered pairs; ``galleries``: the
    configuration names the preprocessed data, so the stamp galleries are drawn)."""
    paths = [table_path(name, ext) for name in TABLES for ext in ("csv", "md")]
    paths += [pair_table_path(s, t, ext) for s, t in study_pairs(surveys, pairs) for ext in ("csv", "md")]
    paths.append(ALL_EVALUATIONS)
    paths += [stats_path(name) for name in STATS]
    paths += [figure_path(name, ext) for name in FIGURES for ext in ("png", "pdf")]
    paths += [gallery_path(survey, kind) for survey in surveys for kind in GALLERIES] if galleries else []
    paths.append(REPORT)
    return paths
