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
