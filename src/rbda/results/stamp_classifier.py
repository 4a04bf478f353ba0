"""Repeated-run comparisons of stamp-classifier variants (issue 14 item 4; RELATED.md E.5).

Input: the run JSONs of ``task: multiclass`` baseline runs, N per variant (distinct
seeds, one balanced split). Output:

* ``summary.csv``: per variant and metric, the mean, SD (ddof 1) and n over runs of the
  **test** part's metrics (accuracy, balanced accuracy; for ZTF the SN precision,
  recall, F1 and F2, EarlySN's headline);
* ``tests.csv``: one-sided Welch tests (:func:`rbda.results.stats.welch_test`) of every
  later variant against every earlier one in the configured order (H1: the later
  variant's mean is higher, as EarlySN's trials were meant to show), Holm-adjusted
  (:func:`rbda.results.stats.holm`) within each metric. On the test part, never the
  validation part that selected the epochs (TwoAlert's flaw);
* ``confusion.png``: per variant, the row-normalised test confusion matrix summed over runs;
* ``report.md``: both tables, beside the published figures
  (``rbda/data/published_stamp_classifier.json``), which are labelled as meaningful on
  the real ALeRCE set only.

:func:`report_section` reads these files back into a section of the study's
``report.html`` (``rbda aggregate --stamp-classifier DIR``; the workflow passes it
when the config has a ``stamp_classifier:`` section).

A metric that is undefined in a run (SN never predicted: precision NaN) is left out of
that run's mean and counted in ``n_undefined``.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as st

from rbda.atomic import atomic_path
from rbda.errors import InputFileError, RbdaError
from rbda.results.stats import ALPHA, holm, welch_test
from rbda.surveys import declared_surveys

PER_CLASS_METRICS = ("precision", "recall", "f1", "f2")


def published() -> dict:
    """``rbda/data/published_stamp_classifier.json``."""
    return json.loads(resources.files("rbda").joinpath("data/published_stamp_classifier.json").read_text())


def welch_from_summary(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
                       alternative: str = "less") -> float:
    """One-sided (by default H1: mean_a < mean_b) Welch p from printed summaries (scipy.stats)."""
    return float(st.ttest_ind_from_stats(mean_a, sd_a, n_a, mean_b, sd_b, n_b, equal_var=False,
                                         alternative=alternative).pvalue)


def _multiclass(record: dict, path: str | Path) -> dict:
    try:
        (evaluation,) = [e for e in record["evaluations"] if e.get("role") == "source" and e.get("part") == "test"]
        return evaluation["multiclass"]
    except (KeyError, TypeError, ValueError):
        raise InputFileError(path, "the run JSON of a `rbda train --task multiclass` baseline run "
                                   "(one source test evaluation with 'multiclass' metrics)") from None


def run_metrics(record: dict, path: str | Path, survey: str) -> dict[str, float]:
    """The test-part metrics of one multiclass run JSON (NaN where undefined)."""
    metrics = _multiclass(record, path)
    if record.get("source") != survey:
        raise InputFileError(path, f"a run on survey {survey!r}, got {record.get('source')!r}")
    value = lambda v: math.nan if v is None else float(v)  # noqa: E731
    out = {"accuracy": value(metrics["accuracy"]), "balanced_accuracy": value(metrics["balanced_accuracy"])}
    # the class whose precision/recall/F1/F2 are reported: the survey declaration's headline_class
    # (ZTF's SN: EarlySN's recall matters most)
    headline = getattr(declared_surveys().get(survey), "headline_class", None)
    if headline is not None:
        row = metrics["per_class"][headline]
        out.update({f"{headline} {name}": value(row[name]) for name in PER_CLASS_METRICS})
    return out


def collect(runs: list[tuple[str, Path]], survey: str) -> pd.DataFrame:
    """One row per run: variant, seed, path, and its test metrics."""
    rows = []
    for variant, path in runs:
        path = Path(path)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputFileError(path, f"a run JSON ({exc})") from None
        rows.append({"variant": variant, "seed": record.get("seed"), "path": str(path),
                     **run_metrics(record, path, survey)})
    return pd.DataFrame(rows)


def summed_confusion(runs: list[tuple[str, Path]], variant: str) -> tuple[list[str], np.ndarray]:
    """Class names and the test confusion counts of ``variant`` summed over its runs."""
    total, classes = None, None
    for name, path in runs:
        if name != variant:
            continue
        metrics = _multiclass(json.loads(Path(path).read_text()), path)
        matrix = np.asarray(metrics.get("confusion"), dtype=float)
        if classes is None:
            classes, total = metrics["classes"], np.zeros_like(matrix)
        if list(metrics["classes"]) != list(classes) or matrix.shape != total.shape:
            raise InputFileError(path, f"the classes {classes} of the other runs, got {metrics['classes']}")
        total += matrix
    return classes, total


def confusion_figure(runs: list[tuple[str, Path]], variants: list[str], path: Path) -> None:
    """Row-normalised test confusion matrices (summed over runs), one panel per variant, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rbda.learn.metrics import row_normalised

    fig, axes = plt.subplots(1, len(variants), figsize=(3.6 * len(variants), 3.4), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        classes, counts = summed_confusion(runs, variant)
        shares = row_normalised(counts)
        ax.imshow(np.nan_to_num(shares), vmin=0, vmax=1, cmap="Blues")
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, "" if np.isnan(shares[i, j]) else f"{shares[i, j]:.2f}", ha="center", va="center",
                        fontsize=7, color="white" if shares[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=45, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_title(variant, fontsize=9)
        ax.set_xlabel("predicted")
    axes[0][0].set_ylabel("true")
    fig.tight_layout()
    with atomic_path(path, suffix=".png.tmp") as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)


def metric_names(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("variant", "seed", "path")]


def summary_table(frame: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    rows = []
    for variant in variants:
        part = frame[frame["variant"] == variant]
        for metric in metric_names(frame):
            values = part[metric].to_numpy(float)
            defined = values[~np.isnan(values)]
            rows.append({"variant": variant, "metric": metric, "n": int(defined.size),
                         "n_undefined": int(values.size - defined.size),
                         "mean": float(defined.mean()) if defined.size else math.nan,
                         "std": float(defined.std(ddof=1)) if defined.size > 1 else math.nan})
    return pd.DataFrame(rows)


def comparison_tests(frame: pd.DataFrame, variants: list[str], alpha: float = ALPHA) -> pd.DataFrame:
    """One-sided Welch tests, H1: the later variant (b) scores higher than the earlier (a); Holm per metric."""
    rows = []
    for metric in metric_names(frame):
        for a, b in combinations(variants, 2):
            values = {v: frame.loc[frame["variant"] == v, metric].to_numpy(float) for v in (a, b)}
            outcome = welch_test(*(x[~np.isnan(x)] for x in (values[a], values[b])), alternative="less")
            rows.append({"metric": metric, "a": a, "b": b, "hypothesis": f"{b} > {a}",
                         **{k: v for k, v in outcome.as_row().items() if k != "p_floor"}})
    tests = pd.DataFrame(rows)
    if tests.empty:
        return tests
    tests["p_holm"] = math.nan
    for _, index in tests.groupby("metric", sort=False).groups.items():
        tests.loc[index, "p_holm"] = holm(tests.loc[index, "p"].to_numpy())
    tests["significant"] = tests["p_holm"] < alpha
    return tests


def _fmt(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "undefined"
    return f"{mean:.4f} ± {std:.4f} (n={n})" if not math.isnan(std) else f"{mean:.4f} (n={n})"


def report_markdown(summary: pd.DataFrame, tests: pd.DataFrame, variants: list[str], survey: str,
                    settings: dict) -> str:
    metrics = list(dict.fromkeys(summary["metric"]))
    lines = [f"# Stamp classifier: repeated runs on {survey} (task: multiclass)", "",
             f"Test part of one balanced split; {settings.get('runs', '?')} runs per variant with distinct seeds. "
             "Means ± SD (ddof 1) over runs; a run where a metric is undefined (class never predicted) is "
             "left out of that metric's mean.", "",
             "| variant | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for variant in variants:
        part = summary[summary["variant"] == variant].set_index("metric")
        lines.append(f"| {variant} | " + " | ".join(_fmt(part.at[m, 'mean'], part.at[m, 'std'], part.at[m, 'n'])
                                                   for m in metrics) + " |")
    lines += ["", f"One-sided Welch tests on the **test** metrics (H1: the later variant is better), "
              f"Holm-adjusted within each metric, alpha {ALPHA}:", "",
              "| metric | hypothesis | mean diff (b - a) | p | p (Holm) | significant | note |",
              "|---|---|---|---|---|---|---|"]
    for _, t in tests.iterrows():
        lines.append(f"| {t['metric']} | {t['hypothesis']} | {t['mean_b'] - t['mean_a']:+.4f} | {t['p']:.3g} | "
                     f"{t['p_holm']:.3g} | {'yes' if t['significant'] else 'no'} | {t['note']} |")
    pub = published()
    lines += ["", "## Published figures (meaningful on the real ALeRCE set only)", "", pub["note"], "",
              "| system | variant | set | runs | accuracy | SN precision | SN recall | SN F1 | SN F2 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in published_table().itertuples(index=False):
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    lines += ["", pub["tests"]["note"], "", "Row-normalised test confusion matrices (summed over runs): "
              "confusion.png.", ""]
    return "\n".join(lines)


def write_outputs(runs: list[tuple[str, Path]], variants: list[str], survey: str, out_dir: Path,
                  settings: dict | None = None) -> dict[str, Path]:
    """``summary.csv``, ``tests.csv``, ``report.md`` and ``confusion.png`` in ``out_dir`` (each atomically;
    none left if one fails)."""
    unknown = sorted({v for v, _ in runs} - set(variants))
    if unknown:
        raise RbdaError(f"runs of variants {unknown} that are not among the configured variants {variants}")
    missing = [v for v in variants if not any(name == v for name, _ in runs)]
    if missing:
        raise RbdaError(f"no runs of variant(s) {missing}")
    frame = collect(runs, survey)
    summary, tests = summary_table(frame, variants), comparison_tests(frame, variants)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out_dir / "summary.csv", "tests": out_dir / "tests.csv", "report": out_dir / "report.md"}
    texts = {"summary": summary.to_csv(index=False), "tests": tests.to_csv(index=False),
             "report": report_markdown(summary, tests, variants, survey, settings or {})}  # all before any write
    paths["confusion"] = out_dir / "confusion.png"
    try:
        for name, path in paths.items():
            if name == "confusion":
                confusion_figure(runs, variants, path)
                continue
            with atomic_path(path) as tmp:
                Path(tmp).write_text(texts[name])
    except BaseException:
        for path in paths.values():
            path.unlink(missing_ok=True)
        raise
    return paths


#: The files of :func:`write_outputs` that :func:`report_section` reads.
SECTION_INPUTS = ("summary.csv", "tests.csv", "confusion.png")


def published_table() -> pd.DataFrame:
    """The published figures as a table (mean ± SD strings; "—" where a paper gives none)."""
    rows = []
    for row in published()["rows"]:
        cells = {label: (f"{row[key][0]:.4f} ± {row[key][1]:.4f}" if key in row else "—")
                 for key, label in (("accuracy", "accuracy"), ("SN precision", "SN precision"),
                                    ("SN recall", "SN recall"), ("SN f1", "SN F1"), ("SN f2", "SN F2"))}
        rows.append({"system": row["system"], "variant": row["variant"], "set": row["set"], "runs": row["runs"],
                     **cells})
    return pd.DataFrame(rows)


def report_section(out_dir: str | Path):
    """The stamp-classifier comparison (the outputs of :func:`write_outputs` in ``out_dir``) as a
    section of report.html; an error naming the file when one is missing or unreadable."""
    from rbda.results.report import ReportSection

    out_dir = Path(out_dir)
    for name in SECTION_INPUTS:
        if not (out_dir / name).is_file():
            raise InputFileError(out_dir / name, "an output of rbda stamp-classifier (the stamp_classifier target)")
    try:
        summary = pd.read_csv(out_dir / "summary.csv")
        tests = pd.read_csv(out_dir / "tests.csv", keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(out_dir, f"summary.csv and tests.csv of rbda stamp-classifier ({exc})") from None
    for name, frame, columns in (("summary.csv", summary, {"variant", "metric", "mean", "std", "n"}),
                                 ("tests.csv", tests, {"metric", "hypothesis", "mean_a", "mean_b", "p", "p_holm",
                                                        "significant", "note"})):
        if not columns <= set(frame.columns):
            raise InputFileError(out_dir / name, f"columns {sorted(columns)}, got {sorted(frame.columns)}")
    variants = list(dict.fromkeys(summary["variant"]))
    metrics = list(dict.fromkeys(summary["metric"]))
    cells = {(row.variant, row.metric): _fmt(float(row.mean), float(row.std), int(row.n))
             for row in summary.itertuples(index=False)}
    table = pd.DataFrame([{"variant": v, **{m: cells.get((v, m), "—") for m in metrics}} for v in variants])
    shown = tests.assign(**{"mean (b) − mean (a)": tests["mean_b"] - tests["mean_a"]})[
        ["metric", "hypothesis", "mean (b) − mean (a)", "p", "p_holm", "significant", "note"]]
    section = ReportSection("Stamp classifier: repeated runs", "stamp-classifier")
    section.paragraph(
        "Multiclass classifiers on one survey's original classes (config <code>stamp_classifier:</code>), "
        "each variant trained several times with distinct seeds on one balanced split. Means ± SD (ddof 1) "
        "over runs of the <b>test</b> part's metrics; a run where a metric is undefined (a class never "
        "predicted) is left out of that metric's mean.")
    section.table(table, caption="Test metrics per variant")
    section.table(shown, caption=f"One-sided Welch tests (H1: the later variant is better), Holm-adjusted within "
                                 f"each metric, alpha {ALPHA}")
    section.figure(out_dir / "confusion.png", "Row-normalised test confusion matrices, summed over runs, "
                                              "one panel per variant.")
    pub = published()
    section.paragraph("<b>Published figures</b> (EarlySN, TwoAlert): meaningful <b>on the real ALeRCE set "
                      "only</b>; beside a study on other or synthetic data they only show the layout. "
                      + html.escape(pub["note"]), css="warning")
    section.table(published_table(), caption="Published figures")
    section.paragraph(html.escape(pub["tests"]["note"]))
    return section
