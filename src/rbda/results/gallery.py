"""Stamp galleries: what the classifier sees.

Three kinds, each a grid of (template, science, difference) triplets as the
network receives them (preprocessed, 21x21, each panel on its own grey scale,
1st to 99th percentile):

* :func:`class_gallery`: a few stamps of every original class of a survey
  (drawn with a seeded generator, so the same study draws the same stamps);
* :func:`errors_gallery`: a baseline's most confident errors on its own test
  part, from the run JSON's ``errors`` (rbda.learn.evaluate.confident_errors);
* :func:`scores_gallery`: the top- and bottom-scored alerts of an
  ``rbda predict`` output, their stamps read again from its inputs with the
  same preprocessing (``rbda gallery``).

:func:`write_study_galleries` draws the first two for every survey of a
study into ``figures/gallery/`` (rbda.results.outputs.GALLERIES) and returns
the report's section; ``rbda aggregate`` calls it when the configuration names
the preprocessed data (``study.data``: survey -> Parquet file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rbda.atomic import atomic_path  # noqa: E402
from rbda.errors import InputFileError, SettingError  # noqa: E402
from rbda.results.outputs import GALLERIES, gallery_path  # noqa: E402
from rbda.study import CHANNELS  # noqa: E402
from rbda.surveys import survey_label  # noqa: E402

#: Stamps per class in a survey's gallery; classes shown at most (the most frequent; the rest named).
PER_CLASS = 4
MAX_CLASSES = 8
#: Alerts per end (highest and lowest p_real) in a predict gallery.
PER_END = 6
PNG_DPI = 110
CHANNEL_LETTERS = "".join(c[0].upper() for c in CHANNELS)  # TSD

Row = tuple[str, list[tuple[np.ndarray, str]]]  # (row title, [(stamp (3, 21, 21), caption)])


def data_paths(config: dict) -> dict[str, str]:
    """``study.data`` of the workflow's effective config (survey -> preprocessed Parquet), or {}."""
    study = config.get("study")
    data = study.get("data") if isinstance(study, dict) else None
    return dict(data) if isinstance(data, dict) else {}


def study_seed(config: dict) -> int:
    """The study's base seed (``config.seed`` of the effective config, or a top-level ``seed``; default 0)."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else config
    seed = inner.get("seed", 0)
    return seed if isinstance(seed, int) and seed >= 0 else 0


def stamp_grid(rows: list[Row], title: str, note: str = "") -> plt.Figure:
    """One row of triplets per entry of ``rows``; each triplet's caption above its template panel."""
    n_cols = max([len(items) for _, items in rows] + [1])
    fig = plt.figure(figsize=(1.0 + 2.6 * n_cols, 0.6 + 1.45 * max(len(rows), 1)))
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    if not rows:
        fig.text(0.5, 0.5, "nothing to show", ha="center", va="center")
        return fig
    # the first (short) subfigure keeps the title clear of the first row of stamps
    head = 0.35 + 0.2 * note.count("\n") + (0.2 if note else 0.0)
    subfigs = fig.subfigures(len(rows) + 1, 1, height_ratios=[head] + [1.45] * len(rows))[1:]
    for subfig, (row_title, items) in zip(subfigs, rows):
        subfig.suptitle(row_title, x=0.01, ha="left", fontsize=9)
        axes = np.atleast_1d(subfig.subplots(1, 3 * n_cols, gridspec_kw={"wspace": 0.05}))
        for ax in axes:
            ax.set_axis_off()
        for i, (stamp, caption) in enumerate(items):
            for c in range(3):
                ax = axes[3 * i + c]
                image = stamp[c]
                finite = image[np.isfinite(image)]
                low, high = np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0)
                ax.imshow(image, cmap="gray", vmin=low, vmax=high if high > low else low + 1, interpolation="nearest")
                ax.set_title(f"{caption}\n{CHANNEL_LETTERS[c]}" if c == 0 else CHANNEL_LETTERS[c], fontsize=6,
                             loc="left" if c == 0 else "center")
    return fig


def _short(text: str, width: int = 18) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def class_gallery(parquet: str | Path, survey: str, seed: int, per_class: int = PER_CLASS,
                  max_classes: int = MAX_CLASSES) -> plt.Figure:
    """A few stamps of each original class (real classes first, then by size), drawn with a seeded generator."""
    from rbda.seeding import rng
    from rbda.ingest.store import read_labels_and_classes, read_rows

    labels, classes = read_labels_and_classes(parquet)
    groups = {}
    for label, name in zip(labels.tolist(), classes.tolist()):
        groups[(label, name)] = groups.get((label, name), 0) + 1
    order = sorted(groups, key=lambda g: (-g[0], -groups[g], g[1]))
    shown, hidden = order[:max_classes], order[max_classes:]
    generator = rng(seed, "gallery", survey)
    picks = []
    for label, name in shown:
        members = np.flatnonzero((labels == label) & (classes == name))
        picks.append(np.sort(generator.choice(members, size=min(per_class, members.size), replace=False)))
    arrays = read_rows(parquet, np.concatenate(picks) if picks else np.empty(0, np.int64))
    rows, start = [], 0
    for (label, name), chosen in zip(shown, picks):
        items = [(arrays.stamps[start + i], _short(arrays.ids[start + i])) for i in range(chosen.size)]
        rows.append((f"{name} ({'real' if label == 1 else 'bogus'}; {groups[(label, name)]} stamps)", items))
        start += chosen.size
    note = (f"{len(hidden)} more classes not shown: " + ", ".join(f"{n} ({groups[(lab, n)]})" for lab, n in hidden)
            if hidden else "")
    return stamp_grid(rows, f"{survey_label(survey)}: stamps per class "
                            f"({CHANNEL_LETTERS}: {', '.join(CHANNELS)})", note)


def errors_gallery(parquet: str | Path, run: dict, run_path: str | Path = "") -> plt.Figure:
    """A baseline's most confident false positives and false negatives on its own test part."""
    from rbda.ingest.store import read_rows

    survey = run["source"]
    title = f"{survey_label(survey)}: the baseline's most confident errors (split {run['split']})"
    errors = run.get("errors")
    if errors is None:
        return stamp_grid([], title, f"the run file {run_path} records no 'errors' (written by an older rbda)")
    if errors["survey"] != survey:
        raise InputFileError(run_path, f"errors on the run's own survey {survey!r}", "errors.survey")
    rows = []
    for key, what in (("false_positives", "bogus called real"), ("false_negatives", "real called bogus")):
        entries = errors[key]
        arrays = read_rows(parquet, [e["row"] for e in entries])
        items = [(arrays.stamps[i], f"p_real {e['p_real']:.3f}\n{_short(arrays.ids[i])}") for i, e in enumerate(entries)]
        rows.append((f"{what} ({errors['part']} part; {len(entries)} most confident)", items))
    return stamp_grid(rows, title)


def save_png(fig: plt.Figure, path: Path) -> None:
    """Write ``path`` atomically, then close the figure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=PNG_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)


def write_study_galleries(runs: Sequence, surveys: list[str], config: dict, out: Path):
    """Every survey's class and errors galleries under ``out`` (data and seed from the configuration,
    :func:`data_paths`, :func:`study_seed`); the report's section for them."""
    from rbda.results.report import ReportSection

    data, seed = data_paths(config), study_seed(config)
    missing = [s for s in surveys if s not in data]
    if missing:
        raise SettingError("study.data", "a preprocessed data file for every survey", f"none for {', '.join(missing)}")
    section = ReportSection("What the classifier sees", "gallery")
    section.paragraph("Preprocessed stamps (T template, S science, D difference; 21×21, each panel on its own "
                      "grey scale) of every class, and each survey's baseline (first split) most confident "
                      "errors on its own test part, with the probability it gave to <i>real</i>.")
    for survey in surveys:
        baselines = sorted((r for r in runs if r.method == "baseline" and r.source == survey), key=lambda r: r.split)
        figures = {"stamps": class_gallery(data[survey], survey, seed)}
        if baselines:
            figures["errors"] = errors_gallery(data[survey], baselines[0].data, baselines[0].path)
        else:
            figures["errors"] = stamp_grid([], f"{survey}: no baseline run")
        for kind in GALLERIES:
            path = out / gallery_path(survey, kind)
            save_png(figures[kind], path)
            section.figure(path, f"{survey_label(survey)}: "
                                 + ("stamps per class" if kind == "stamps" else "the baseline's most confident errors"))
    return section


def scores_gallery(scores: str | Path, inputs: Sequence[str | Path], per_end: int = PER_END,
                   survey: str | None = None, fmt: str | None = None) -> plt.Figure:
    """The ``per_end`` highest- and lowest-scored alerts of an ``rbda predict`` table, stamps read
    again from its ``inputs`` (the same preprocessing); an alert not found there is an error."""
    import pyarrow.parquet as pq

    from rbda.alerts.predict import ScorableInput, input_kind

    scores = Path(scores)
    try:
        table = pq.read_table(scores)
    except Exception as exc:  # pyarrow raises several types for a file it cannot read
        raise InputFileError(scores, f"an `rbda predict` Parquet output ({exc})") from None
    key = "candid" if "candid" in table.column_names else "id"
    if key not in table.column_names or "p_real" not in table.column_names:
        raise InputFileError(scores, "an `rbda predict` output with columns p_real and candid or id")
    keys = np.asarray(table.column(key).to_pylist(), dtype=object)
    p = np.asarray(table.column("p_real").to_numpy(zero_copy_only=False), dtype=np.float64)
    order = np.lexsort((np.arange(p.size), -p))
    ends = {"highest p_real": order[:per_end], "lowest p_real": order[::-1][:per_end]}
    wanted = {str(keys[i]) for idx in ends.values() for i in idx}
    found: dict[str, np.ndarray] = {}
    paths = [Path(x) for x in inputs]
    source = ScorableInput(input_kind(paths, survey), paths, survey, fmt, skip_bad=True)
    for block in source.blocks():
        for j, k in enumerate(block.columns[key]):
            if str(k) in wanted:
                found[str(k)] = block.stamps[j].copy()
    absent = sorted(wanted - set(found))
    if absent:
        raise InputFileError(paths[0], f"the scored alerts of {scores} ({key} {', '.join(absent[:5])} not found)")
    label = "objectId" if "objectId" in table.column_names else "id"
    names = table.column(label).to_pylist()
    rows = [(f"{end} ({len(idx)} of {p.size} scored)",
             [(found[str(keys[i])], f"p_real {p[i]:.3f}\n{_short(str(names[i]))}") for i in idx])
            for end, idx in ends.items()]
    return stamp_grid(rows, f"{scores.name}: top- and bottom-scored alerts "
                            f"({CHANNEL_LETTERS}: {', '.join(CHANNELS)})")
