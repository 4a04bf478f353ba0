"""Figure layout: one row per source, two panels per pair, unused panels hidden."""

from __future__ import annotations

import pandas as pd

from rbda.results import figures
from rbda.study import ordered_pairs


def test_pair_layout_all_pairs_and_a_subset():
    positions, rows, cols = figures.pair_layout(ordered_pairs(["hits", "des", "ztf", "atlas"]))
    assert (rows, cols) == (4, 3)
    assert positions[("hits", "des")] == (0, 0) and positions[("atlas", "ztf")] == (3, 2)
    positions, rows, cols = figures.pair_layout([("des", "hits"), ("ztf", "hits"), ("des", "ztf")])
    assert (rows, cols) == (2, 2)
    assert positions == {("des", "hits"): (0, 0), ("ztf", "hits"): (1, 0), ("des", "ztf"): (0, 1)}


def test_curves_figure_draws_both_methods_and_the_baseline_per_panel():
    methods = pd.DataFrame([
        {"source": "des", "target": "hits", "method": m, "shots": n, "domain": d, "mean": 0.8,
         "std": 0.01, "n_splits": 2}
        for m in ("finetune", "mme") for n in (1, 5) for d in ("source", "target")])
    baseline = pd.DataFrame([{"trained_on": "des", "tested_on": s, "mean": 0.7, "std": 0.0, "n_splits": 2}
                             for s in ("des", "hits")])
    fig = figures.bacc_vs_shots(methods, baseline, [("des", "hits"), ("des", "ztf")])
    try:
        visible = [ax for ax in fig.axes if ax.axison]
        assert len(visible) == 4
        drawn = visible[1]
        assert drawn.get_title() == "DES→HiTS\non HiTS (target)"
        labels = drawn.get_legend_handles_labels()[1]
        assert sorted(labels) == ["FT", "MME", "baseline"]
        assert [ax.get_legend_handles_labels()[1] for ax in visible[2:]] == [["baseline"], []]
    finally:
        figures.plt.close(fig)


def _methods_frame(names):
    return pd.DataFrame([
        {"source": "des", "target": "hits", "method": m, "shots": n, "domain": d, "mean": 0.8,
         "std": 0.01, "n_splits": 2}
        for m in names for n in (1, 5) for d in ("source", "target")])


def test_curves_and_boxes_draw_every_method():
    from rbda.registry import ADAPTATION_METHODS, METHOD_LABELS

    names = ADAPTATION_METHODS
    shown = [METHOD_LABELS[m] for m in names]
    baseline = pd.DataFrame([{"trained_on": "des", "tested_on": s, "mean": 0.7, "std": 0.0, "n_splits": 2}
                             for s in ("des", "hits")])
    fig = figures.bacc_vs_shots(_methods_frame(names), baseline, [("des", "hits")])
    try:
        labels = fig.axes[1].get_legend_handles_labels()[1]
        assert [label for label in labels if label != "baseline"] == shown
        assert "baseline" in labels
    finally:
        figures.plt.close(fig)
    scores = pd.DataFrame([{"source": "des", "target": "hits", "method": m, "shots": n, "domain": d,
                            "split": k, "bacc": 0.8 + 0.01 * k}
                           for m in names for n in (1, 5) for d in ("source", "target") for k in range(3)])
    fig = figures.boxplots(scores, baseline, [("des", "hits")])
    try:
        ax = fig.axes[1]
        labels = ax.get_legend_handles_labels()[1]
        assert sorted(labels) == sorted([*shown, "baseline"])
        assert [label for label in labels if label != "baseline"] == shown
        colours = {figures.matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches}
        assert colours == {figures.METHOD_COLOURS[m] for m in names}  # one colour per method
    finally:
        figures.plt.close(fig)


def test_source_cost_vs_target_gain_has_a_point_per_method_and_shots():
    cost = pd.DataFrame([{"source": "des", "target": "hits", "method": m, "shots": n, "source_loss": loss,
                          "target_gain": gain, "source_loss_significant": loss > 0.1,
                          "target_gain_significant": gain > 0.1, "n_splits": 3}
                         for m, loss in (("finetune", 0.15), ("mme", 0.0), ("st", 0.05))
                         for n, gain in ((1, 0.05), (5, 0.2))])
    fig = figures.source_cost_vs_target_gain(cost, [("des", "hits"), ("hits", "des")])
    try:
        drawn, empty = fig.axes[0], fig.axes[1]
        offsets = [tuple(p) for c in drawn.collections for p in c.get_offsets()]
        assert {(0.15, 0.2), (0.0, 0.05), (0.05, 0.2)} <= set(offsets)
        assert sorted(t.get_text() for t in drawn.texts) == ["1", "1", "1", "5", "5", "5"]
        assert [t.get_text() for t in empty.texts] == ["no runs"]
        assert drawn.get_xlabel() == "source BACC loss vs baseline"
    finally:
        figures.plt.close(fig)


def test_every_adaptation_method_has_a_colour_of_its_own():
    from rbda.registry import ADAPTATION_METHODS

    colours = [figures.method_colour(m) for m in ADAPTATION_METHODS]
    assert len(set(colours)) == len(ADAPTATION_METHODS)
    assert figures.method_colour("not-a-method") not in colours  # the grey is only for names outside the vocabulary


def test_lambda_curves_draw_any_number_of_lambda_methods_each_in_its_style():
    """Every lambda method's curves are drawn, however many there are (a fixed list of line styles
    zipped with the methods once dropped the fifth); styles are the methods' declarations'."""
    from rbda.registry import LAMBDA_METHODS, METHOD_LINE_STYLES

    names = [*LAMBDA_METHODS, "extra1", "extra2", "extra3", "extra4"]  # the extras: outside the registry
    frame = pd.DataFrame([{"source": "des", "target": "hits", "method": m, "lambda": lam, "shots": n,
                           "split": 0, "val_bacc": 0.7} for m in names for lam in (0.1, 1.0) for n in (1, 5)])
    fig = figures.lambda_curves(frame, [("des", "hits")])
    try:
        lines = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("λ=")]
        drawn = {line.get_label().split("(", 1)[1].rstrip(")") for line in lines}
        assert len(lines) == 2 * len(names) and len(drawn) == len(names)
        styles = {line.get_label(): line.get_linestyle() for line in lines}
        for m in LAMBDA_METHODS:
            label = f"λ=0.1 ({figures.method_label(m)})"
            assert styles[label] == figures.matplotlib.lines.Line2D([], [], linestyle=METHOD_LINE_STYLES[m]).get_linestyle()
    finally:
        figures.plt.close(fig)
