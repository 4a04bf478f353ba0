"""Figures of the study (matplotlib, Agg backend), each saved as PNG and PDF.

Pair grids put one row per source survey and, per target survey, two panels
(BACC on the source's test part, BACC on the target's test part), so that any
number of surveys gives one readable figure instead of one file per pair.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rbda.atomic import atomic_path  # noqa: E402
from rbda.results.naming import method_label, survey_label  # noqa: E402
from rbda.results.outputs import figure_path  # noqa: E402
from rbda.study import ADAPTATION_METHODS, format_lambda  # noqa: E402

#: One colour per adaptation method (colour-blind safe Dark2; FT orange and MME green as published);
#: a method added to the vocabulary without a colour here fails at import (strict zip).
METHOD_COLOURS = dict(zip(ADAPTATION_METHODS, ("#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"),
                          strict=True))
#: Line styles of the lambda methods in the lambda curves.
LAMBDA_METHOD_STYLES = ("-", "--", ":", "-.")
BASELINE_STYLE = dict(color="0.35", linestyle="--", linewidth=1.0)
PNG_DPI = 110


def save_figure(fig: plt.Figure, out_dir: Path, name: str) -> None:
    """Write ``figures/{name}.png`` and ``.pdf`` atomically, then close the figure."""
    try:
        for ext in ("png", "pdf"):
            with atomic_path(out_dir / figure_path(name, ext), suffix=f".{ext}") as tmp:
                fig.savefig(tmp, format=ext, dpi=PNG_DPI, bbox_inches="tight")
    finally:
        plt.close(fig)


def baseline_heatmap(table: pd.DataFrame, surveys: list[str]) -> plt.Figure:
    """Rows: trained on; columns: tested on; colour = mean BACC, text = mean ± std."""
    n = len(surveys)
    means = np.full((n, n), np.nan)
    text = [["" for _ in surveys] for _ in surveys]
    index = {s: i for i, s in enumerate(surveys)}
    for r in table.itertuples():
        i, j = index[r.trained_on], index[r.tested_on]
        means[i, j] = r.mean
        text[i][j] = f"{r.mean:.3f}" + (f"\n± {r.std:.3f}" if r.n_splits > 1 else "\n(1 split)")
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.2, 1.0 * n + 1.4))
    image = ax.imshow(means, cmap="viridis", vmin=0.5, vmax=1.0)
    for i in range(n):
        for j in range(n):
            if text[i][j]:
                colour = "black" if means[i, j] > 0.8 else "white"
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8, color=colour)
    labels = [survey_label(s) for s in surveys]
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    ax.set_title("Baseline balanced accuracy")
    fig.colorbar(image, ax=ax, label="BACC (mean over splits)")
    return fig


def pair_layout(pairs: list[tuple[str, str]]) -> tuple[dict[tuple[str, str], tuple[int, int]], int, int]:
    """Grid position of each pair: a row per source (first-seen order), its targets along
    the row. Returns ``(positions, n_rows, n_cols)``."""
    sources = list(dict.fromkeys(source for source, _ in pairs))
    positions, used = {}, {source: 0 for source in sources}
    for source, target in pairs:
        positions[(source, target)] = (sources.index(source), used[source])
        used[source] += 1
    return positions, len(sources), max(used.values())


def _hide_unused(axes: np.ndarray, used: set) -> None:
    for (i, j), ax in np.ndenumerate(axes):
        if (i, j) not in used:
            ax.set_axis_off()


def _pair_grid(pairs: list[tuple[str, str]], panel_w: float = 2.3, panel_h: float = 2.0):
    """Figure and a dict ``(source, target, domain) -> axes``: two panels per pair."""
    positions, n_rows, n_cols = pair_layout(pairs)
    fig, axes = plt.subplots(n_rows, 2 * n_cols, figsize=(panel_w * 2 * n_cols, panel_h * n_rows + 0.6),
                             sharey=True, squeeze=False)
    grid, used = {}, set()
    for (source, target), (i, j) in positions.items():
        for k, domain in enumerate(("source", "target")):
            ax = axes[i, 2 * j + k]
            used.add((i, 2 * j + k))
            shown = source if domain == "source" else target
            ax.set_title(f"{survey_label(source)}→{survey_label(target)}\non {survey_label(shown)} "
                         f"({domain})", fontsize=8)
            ax.tick_params(labelsize=7)
            grid[(source, target, domain)] = ax
    _hide_unused(axes, used)
    for ax in axes[:, 0]:
        ax.set_ylabel("test BACC", fontsize=8)
    return fig, grid


def _baseline_value(baseline: pd.DataFrame, source: str, shown: str) -> float | None:
    row = baseline[(baseline["trained_on"] == source) & (baseline["tested_on"] == shown)]
    return float(row["mean"].iloc[0]) if len(row) else None


def _shots_axis(ax, shots: list[int]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(shots, [str(s) for s in shots])
    ax.minorticks_off()
    ax.set_xlabel("shots per class", fontsize=7)


def method_colour(method: str) -> str:
    """The method's colour (a grey for a name outside the vocabulary)."""
    return METHOD_COLOURS.get(method, "0.5")


def _methods_present(frame: pd.DataFrame) -> list[str]:
    present = set(frame["method"]) if len(frame) else set()
    return [m for m in ADAPTATION_METHODS if m in present] + sorted(present - set(ADAPTATION_METHODS))


def bacc_vs_shots(methods: pd.DataFrame, baseline: pd.DataFrame,
                  pairs: list[tuple[str, str]]) -> plt.Figure:
    """Every method's mean ± std over splits against shots; baseline dashed."""
    fig, grid = _pair_grid(pairs)
    shots = sorted(methods["shots"].unique().tolist())
    for (source, target, domain), ax in grid.items():
        rows = methods[(methods["source"] == source) & (methods["target"] == target)
                       & (methods["domain"] == domain)]
        for method in _methods_present(rows):
            curve = rows[rows["method"] == method].sort_values("shots")
            ax.errorbar(curve["shots"], curve["mean"], yerr=curve["std"].fillna(0), marker="o",
                        markersize=3, capsize=2, linewidth=1.2, color=method_colour(method),
                        label=method_label(method))
        level = _baseline_value(baseline, source, source if domain == "source" else target)
        if level is not None:
            ax.axhline(level, **BASELINE_STYLE, label="baseline")
        if shots:
            _shots_axis(ax, shots)
    _legend(fig, grid.values())
    fig.suptitle("BACC vs shots (mean ± std over splits); dashed: the source model (baseline)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _legend(fig: plt.Figure, axes, ncol_max: int = 8) -> None:
    """One legend below the figure with each label once, from all ``axes``."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center",
                   ncol=min(len(handles), ncol_max), fontsize=8, bbox_to_anchor=(0.5, -0.03),
                   frameon=False)


def boxplots(scores: pd.DataFrame, baseline: pd.DataFrame, pairs: list[tuple[str, str]]) -> plt.Figure:
    """Distribution over splits: per shot count one box per method, side by side."""
    fig, grid = _pair_grid(pairs)
    shots = sorted(scores["shots"].unique().tolist())
    positions = {n: i for i, n in enumerate(shots)}
    present = _methods_present(scores)
    width = 0.8 / max(len(present), 1)
    offsets = {m: (i - (len(present) - 1) / 2) * width for i, m in enumerate(present)}
    for (source, target, domain), ax in grid.items():
        rows = scores[(scores["source"] == source) & (scores["target"] == target)
                      & (scores["domain"] == domain)]
        for method, offset in offsets.items():
            data = [rows[(rows["method"] == method) & (rows["shots"] == n)]["bacc"].to_numpy()
                    for n in shots]
            present = [i for i, d in enumerate(data) if len(d)]
            if not present:
                continue
            parts = ax.boxplot([data[i] for i in present], positions=[i + offset for i in present],
                               widths=0.85 * width, patch_artist=True, manage_ticks=False,
                               medianprops=dict(color="black", linewidth=1),
                               flierprops=dict(markersize=2))
            for box in parts["boxes"]:
                box.set_facecolor(method_colour(method))
                box.set_alpha(0.75)
            box_handle = parts["boxes"][0]
            box_handle.set_label(method_label(method))
        level = _baseline_value(baseline, source, source if domain == "source" else target)
        if level is not None:
            ax.axhline(level, **BASELINE_STYLE, label="baseline")
        ax.set_xticks(list(positions.values()), [str(n) for n in shots])
        ax.set_xlabel("shots per class", fontsize=7)
    _legend(fig, grid.values())
    fig.suptitle("BACC over splits (one box per method and shot count); dashed: baseline mean",
                 fontsize=10)
    fig.tight_layout()
    return fig


def lambda_curves(lambdas: pd.DataFrame, pairs: list[tuple[str, str]]) -> plt.Figure:
    """Mean target validation BACC vs shots, one line per lambda, one panel per pair."""
    positions, n_rows, n_cols = pair_layout(pairs)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.1 * n_rows + 0.6), sharey=True,
                             squeeze=False)
    _hide_unused(axes, set(positions.values()))
    values = sorted(lambdas["lambda"].unique().tolist()) if not lambdas.empty else []
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(values), 1)))
    shots = sorted(lambdas["shots"].unique().tolist()) if not lambdas.empty else []
    lambda_methods = _methods_present(lambdas)
    for (source, target), (i, j) in positions.items():
        ax = axes[i, j]
        ax.set_title(f"{survey_label(source)}→{survey_label(target)}", fontsize=8)
        ax.tick_params(labelsize=7)
        rows = lambdas[(lambdas["source"] == source) & (lambdas["target"] == target)]
        if rows.empty:
            ax.text(0.5, 0.5, "no per-lambda\nruns", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, color="0.4")
            continue
        means = rows.groupby(["method", "lambda", "shots"])["val_bacc"].mean().reset_index()
        for method, style in zip(lambda_methods, LAMBDA_METHOD_STYLES):
            for value, colour in zip(values, colours):
                curve = means[(means["method"] == method) & (means["lambda"] == value)].sort_values("shots")
                if len(curve):
                    label = f"λ={format_lambda(value)}" + (f" ({method_label(method)})" if len(lambda_methods) > 1 else "")
                    ax.plot(curve["shots"], curve["val_bacc"], marker="o", markersize=3, linestyle=style,
                            linewidth=1.1, color=colour, label=label)
        _shots_axis(ax, shots)
    for i in range(n_rows):
        axes[i, 0].set_ylabel("target val. BACC", fontsize=8)
    _legend(fig, axes.flat)
    names = ", ".join(method_label(m) for m in lambda_methods) or "λ methods"
    styles = (" (line style: method)" if len(lambda_methods) > 1 else "")
    fig.suptitle(f"{names}: target validation BACC vs shots per λ (mean over splits){styles}", fontsize=10)
    fig.tight_layout()
    return fig


def source_cost_vs_target_gain(cost_gain: pd.DataFrame, pairs: list[tuple[str, str]]) -> plt.Figure:
    """Per pair: one point per method and shot count, x = mean source BACC loss against the
    baseline, y = mean target gain; a method's points joined in shot order and labelled with
    their shot count; filled markers where the gain (target) is significant, a ring around a
    point whose source loss is significant."""
    positions, n_rows, n_cols = pair_layout(pairs)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.9 * n_cols, 2.5 * n_rows + 0.7), squeeze=False)
    _hide_unused(axes, set(positions.values()))
    present = _methods_present(cost_gain)
    for (source, target), (i, j) in positions.items():
        ax = axes[i, j]
        ax.set_title(f"{survey_label(source)}→{survey_label(target)}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.axhline(0, color="0.6", linewidth=0.7)
        ax.axvline(0, color="0.6", linewidth=0.7)
        rows = cost_gain[(cost_gain["source"] == source) & (cost_gain["target"] == target)]
        if rows.empty:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes, fontsize=8,
                    color="0.4")
        for method in present:
            points = rows[rows["method"] == method].sort_values("shots")
            if points.empty:
                continue
            colour = method_colour(method)
            ax.plot(points["source_loss"], points["target_gain"], color=colour, linewidth=0.8, alpha=0.6)
            filled = points["target_gain_significant"].astype(bool)
            ax.scatter(points.loc[filled, "source_loss"], points.loc[filled, "target_gain"], color=colour,
                       s=18, zorder=3, label=method_label(method))
            ax.scatter(points.loc[~filled, "source_loss"], points.loc[~filled, "target_gain"], facecolors="white",
                       edgecolors=colour, s=18, zorder=3, label=method_label(method))
            lost = points[points["source_loss_significant"].astype(bool)]
            ax.scatter(lost["source_loss"], lost["target_gain"], facecolors="none", edgecolors="black",
                       s=55, linewidths=0.7, zorder=2)
            for p in points.itertuples():
                ax.annotate(str(p.shots), (p.source_loss, p.target_gain), fontsize=6, xytext=(2, 2),
                            textcoords="offset points", color=colour)
        ax.set_xlabel("source BACC loss vs baseline", fontsize=7)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    for i in range(n_rows):
        axes[i, 0].set_ylabel("target BACC gain", fontsize=8)
    _legend(fig, axes.flat)
    fig.suptitle("Source cost vs target gain (mean paired differences with the baseline)\n"
                 "labels: shots; filled: gain significant; ring: loss significant", fontsize=9)
    fig.tight_layout()
    return fig
