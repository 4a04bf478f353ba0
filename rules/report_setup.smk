# What the report rules read (rules/report.smk): the effective config, the reporting code's
# hash, the report outputs and their captions in Snakemake's report.

from pathlib import Path

import rbda
from rbda.results.outputs import GALLERY_DIR, expected_outputs


def effective_config():
    """The merged, validated config plus what the workflow derived from it (for `rbda aggregate`)."""
    return {
        "config": config,
        "study": {
            "surveys": SURVEYS,
            "pairs": [f"{s}-to-{t}" for s, t in PAIRS],
            "splits": SPLITS,
            "shots": SHOTS,
            "lambdas": [LAMBDA_BY_LABEL[label] for label in LAMBDA_LABELS],
            "lambda_labels": LAMBDA_LABELS,
            "lambda_selection": LAMBDA_SELECTION,
            "methods": CONFIGURED_METHODS,
            # the preprocessed data: `rbda aggregate` draws stamp galleries from it
            "data": {s: PARQUET.format(survey=s) for s in SURVEYS},
        },
        "rbda_version": rbda.__version__,
    }


def reporting_code():
    """Source files of the aggregation and report code: editing one reruns reporting only."""
    import rbda.results

    files = []
    for package_dir in rbda.results.__path__:
        root = Path(package_dir)
        files += sorted(
            str(p)
            for p in root.rglob("*")
            if p.is_file()
            and p.suffix in {".py", ".html", ".css", ".js", ".j2", ".rst"}
            and "__pycache__" not in p.parts
        )
    return files


REPORT_CAPTIONS = "workflow/report"  # relative to the Snakefile


def _in_snakemake_report(path):
    """Figures, tables, statistics and report.html are shown in `snakemake --report`, with captions."""
    name = Path(path).stem
    if path.startswith(f"{GALLERY_DIR}/"):
        return report(f"results/{path}", caption=f"{REPORT_CAPTIONS}/gallery.rst", category="Stamp galleries")
    if path.startswith("figures/") and path.endswith(".png"):
        return report(f"results/{path}", caption=f"{REPORT_CAPTIONS}/{name}.rst", category="Figures")
    if path.startswith("tables/") and path.endswith(".csv"):
        subcategory = "Per pair" if path.startswith("tables/pairs/") else "Study"
        return report(
            f"results/{path}", caption=f"{REPORT_CAPTIONS}/tables.rst", category="Tables", subcategory=subcategory
        )
    if path.startswith("stats/"):
        return report(f"results/{path}", caption=f"{REPORT_CAPTIONS}/stats.rst", category="Significance tests")
    if path == "report.html":
        return report(f"results/{path}", caption=f"{REPORT_CAPTIONS}/report.rst", category="Report")
    return f"results/{path}"


def report_outputs():
    """Every file `rbda aggregate` writes (named by rbda.results.outputs), most of them in the Snakemake report."""
    return [
        _in_snakemake_report(path)
        for path in expected_outputs(SURVEYS, PAIRS, methods=CONFIGURED_METHODS, galleries=True)
    ]
