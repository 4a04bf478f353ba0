"""The published numbers (docs/method.md section 9) and side-by-side tables with this study.

The numbers come from the real surveys; a comparison is meaningful only when
this study also ran on the real surveys (not on synthetic data).
"""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

from rbda.study import pair_name
from rbda.registry import ADAPTATION_METHODS


def load_published() -> dict:
    """``rbda/data/published.json`` as a dict."""
    return json.loads(resources.files("rbda").joinpath("data/published.json").read_text())


def baseline_side_by_side(ours: pd.DataFrame, published: dict) -> pd.DataFrame:
    """Baseline cells present in both: this study's and the paper's mean and std."""
    paper = pd.DataFrame(published["baseline_bacc"]).rename(
        columns={"mean": "published_mean", "std": "published_std"})
    mine = ours.rename(columns={"mean": "this_study_mean", "std": "this_study_std",
                                "n_splits": "this_study_n_splits"})
    both = mine.merge(paper, on=["trained_on", "tested_on"], how="inner")
    both["difference"] = both["this_study_mean"] - both["published_mean"]
    return both[["trained_on", "tested_on", "this_study_mean", "this_study_std",
                 "this_study_n_splits", "published_mean", "published_std", "difference"]]


def shots_to_beat_side_by_side(ours: pd.DataFrame, published: dict) -> pd.DataFrame:
    """Shots to beat the baseline, per pair and method: this study vs the thesis (the methods
    the thesis reports, FT and MME; other methods have no published number)."""
    frame = pd.DataFrame(published["shots_to_beat_baseline"])
    paper = (frame
             .melt(id_vars=["source", "target"], value_vars=[m for m in ADAPTATION_METHODS if m in frame.columns],
                   var_name="method", value_name="published_shots_to_beat"))
    mine = ours[["source", "target", "method", "shots_tested", "shots_to_beat"]].rename(
        columns={"shots_to_beat": "this_study_shots_to_beat"})
    both = mine.merge(paper, on=["source", "target", "method"], how="inner")
    both.insert(2, "pair", [pair_name(s, t) for s, t in zip(both["source"], both["target"])])
    both["this_study_shots_to_beat"] = both["this_study_shots_to_beat"].astype(str)
    return both


def selected_bacc_side_by_side(methods: pd.DataFrame, published: dict) -> pd.DataFrame:
    """The thesis's quoted BACC values (given pair, shots, domain, method) beside this study's mean."""
    quoted = []
    for key, domain in (("target_bacc_at_shots", "target"), ("source_bacc_at_shots", "source")):
        for row in published[key]:
            for method in (m for m in ADAPTATION_METHODS if m in row):
                quoted.append({"source": row["source"], "target": row["target"], "shots": row["shots"],
                               "domain": domain, "method": method, "published_mean": row[method]})
    paper = pd.DataFrame(quoted)
    mine = methods[["source", "target", "shots", "domain", "method", "mean", "n_splits"]].rename(
        columns={"mean": "this_study_mean", "n_splits": "this_study_n_splits"})
    both = paper.merge(mine, on=["source", "target", "shots", "domain", "method"], how="left")
    both["difference"] = both["this_study_mean"] - both["published_mean"]
    both["note"] = ["" if ran else "not run in this study (pair or shot count not configured)"
                    for ran in both["this_study_mean"].notna()]
    both["this_study_n_splits"] = both["this_study_n_splits"].fillna(0).astype(int)
    return both[["source", "target", "shots", "domain", "method", "this_study_mean",
                 "this_study_n_splits", "published_mean", "difference", "note"]]
