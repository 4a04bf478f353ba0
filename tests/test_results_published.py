"""The published numbers (docs/method.md section 9) and the side-by-side tables."""

from __future__ import annotations

import pandas as pd
import pytest

from rbda.results import published
from rbda.study import ordered_pairs

SURVEYS = ["hits", "des", "atlas", "ztf"]


def test_published_numbers_are_complete():
    paper = published.load_published()
    cells = {(r["trained_on"], r["tested_on"]) for r in paper["baseline_bacc"]}
    assert cells == {(a, b) for a in SURVEYS for b in SURVEYS}
    assert {(r["source"], r["target"]) for r in paper["shots_to_beat_baseline"]} == set(ordered_pairs(SURVEYS))
    des_hits = next(r for r in paper["shots_to_beat_baseline"] if (r["source"], r["target"]) == ("des", "hits"))
    assert (des_hits["finetune"], des_hits["mme"]) == (20, 1)
    diag = {r["trained_on"]: r["mean"] for r in paper["baseline_bacc"] if r["trained_on"] == r["tested_on"]}
    assert diag == {"hits": 0.983, "des": 0.955, "atlas": 0.967, "ztf": 0.945}


def test_baseline_side_by_side_only_shared_cells_with_difference():
    ours = pd.DataFrame([{"trained_on": "des", "tested_on": "hits", "mean": 0.9, "std": 0.01, "n_splits": 3},
                         {"trained_on": "des", "tested_on": "other", "mean": 0.8, "std": 0.01, "n_splits": 3}])
    table = published.baseline_side_by_side(ours, published.load_published())
    assert len(table) == 1
    assert table["published_mean"].iloc[0] == 0.945
    assert table["difference"].iloc[0] == pytest.approx(0.9 - 0.945)


def test_selected_bacc_notes_what_this_study_did_not_run():
    methods = pd.DataFrame([{"source": "des", "target": "hits", "shots": 1, "domain": "target",
                             "method": "mme", "mean": 0.95, "n_splits": 2}])
    table = published.selected_bacc_side_by_side(methods, published.load_published())
    ran = table[(table.source == "des") & (table.shots == 1) & (table.method == "mme")].iloc[0]
    assert ran["published_mean"] == 0.958 and ran["difference"] == pytest.approx(-0.008)
    assert ran["note"] == ""
    missing = table[(table.source == "des") & (table.shots == 40) & (table.method == "mme")].iloc[0]
    assert pd.isna(missing["this_study_mean"]) and "not run in this study" in missing["note"]
