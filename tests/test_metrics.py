"""Multiclass metrics against hand-computed values (rbda.learn.metrics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rbda.errors import RbdaError
from rbda.learn.metrics import confusion_matrix, f_beta, metrics_of_predictions, multiclass_metrics, row_normalised

CLASSES = ("AGN", "SN", "VS")
# truth AGN: 2 right, 2 called SN; SN: 1 called AGN, 3 right; VS: 2 called AGN, never predicted
TRUE = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
PRED = [0, 0, 1, 1, 0, 1, 1, 1, 0, 0]


def test_confusion_matrix_rows_are_truth():
    assert confusion_matrix(TRUE, PRED, 3).tolist() == [[2, 2, 0], [1, 3, 0], [2, 0, 0]]


def test_hand_computed_metrics_with_a_class_never_predicted():
    m = metrics_of_predictions(TRUE, PRED, CLASSES)
    assert m.accuracy == pytest.approx(5 / 10)
    assert m.balanced_accuracy == pytest.approx((2 / 4 + 3 / 4 + 0 / 2) / 3)
    np.testing.assert_allclose(m.precision[:2], [2 / 5, 3 / 5])
    assert math.isnan(m.precision[2])  # VS never predicted
    np.testing.assert_allclose(m.recall, [0.5, 0.75, 0.0])
    np.testing.assert_allclose(m.f[1.0][:2], [2 * 0.4 * 0.5 / 0.9, 2 * 0.6 * 0.75 / 1.35])
    assert m.f[2.0][1] == pytest.approx(5 * 0.6 * 0.75 / (4 * 0.6 + 0.75))  # SN F2 = 0.714...
    assert math.isnan(m.f[1.0][2]) and math.isnan(m.f[2.0][2])
    assert any("'VS' never predicted" in note for note in m.notes)
    record = json.loads(json.dumps(m.as_dict(), allow_nan=False))  # valid JSON: NaN written as null
    assert record["per_class"]["VS"]["precision"] is None and record["per_class"]["VS"]["recall"] == 0.0
    assert record["per_class"]["SN"]["f2"] == pytest.approx(0.7142857)
    assert record["confusion"] == [[2, 2, 0], [1, 3, 0], [2, 0, 0]]


def test_class_without_items_is_left_out_of_balanced_accuracy():
    m = multiclass_metrics(np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]]), CLASSES)
    assert m.balanced_accuracy == pytest.approx((3 / 4 + 2 / 2) / 2)
    assert math.isnan(m.recall[2]) and any("'VS' has no items" in n for n in m.notes)


def test_f_beta_formula_and_edges():
    assert f_beta(0.9, 0.8, 2.0) == pytest.approx(5 * 0.72 / (3.6 + 0.8))
    assert f_beta(0.5, 0.5, 1.0) == 0.5
    assert f_beta(0.0, 0.0, 2.0) == 0.0
    assert math.isnan(f_beta(math.nan, 0.5, 1.0))


def test_row_normalised():
    got = row_normalised(np.array([[2, 2], [0, 0]]))
    assert got[0].tolist() == [0.5, 0.5] and np.isnan(got[1]).all()


def test_bad_inputs_are_errors():
    with pytest.raises(RbdaError, match="prediction 3 outside 0..2"):
        confusion_matrix([0], [3], 3)
    with pytest.raises(RbdaError, match="shape \\(3, 3\\)"):
        multiclass_metrics(np.zeros((2, 2)), CLASSES)
    with pytest.raises(RbdaError, match="at least one"):
        multiclass_metrics(np.zeros((3, 3)), CLASSES)


# --- the metrics survey teams report ----------------------------------------------------------------

def test_roc_auc_by_hand_with_ties_and_against_pair_counting():
    from rbda.learn.metrics import roc_auc

    labels = np.array([1, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.4, 0.4, 0.1, 0.8, 0.7])
    # real-bogus pairs: 0.9 beats all 3; 0.8 beats all 3; 0.4 beats 0.1, ties 0.4, loses to 0.7 -> 1.5
    assert roc_auc(labels, scores) == pytest.approx((3 + 3 + 1.5) / 9)
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 300), rng.random(300).round(2)
    real, bogus = scores[labels == 1], scores[labels == 0]
    pairs = (real[:, None] > bogus[None, :]).mean() + 0.5 * (real[:, None] == bogus[None, :]).mean()
    assert roc_auc(labels, scores) == pytest.approx(pairs)
    assert roc_auc(np.ones(4), np.arange(4)) is None


def test_threshold_for_completeness_is_the_highest_that_keeps_it():
    from rbda.learn.metrics import operating_point, threshold_for_completeness

    labels = np.array([1] * 20 + [0] * 5)
    scores = np.concatenate([np.linspace(1.0, 0.05, 20), [0.5, 0.3, 0.2, 0.02, 0.01]])
    threshold = threshold_for_completeness(labels, scores, 0.95)  # 19 of 20 real at or above it
    assert threshold == pytest.approx(scores[18])
    point = operating_point(labels, scores, threshold)
    assert point["completeness"] == pytest.approx(0.95)
    assert point["fpr"] == pytest.approx(3 / 5) and point["purity"] == pytest.approx(19 / 22)
    assert threshold_for_completeness(labels, scores, 0.99) == pytest.approx(scores[19])  # all 20


def test_survey_team_metrics_choose_the_threshold_on_validation():
    from rbda.learn.metrics import survey_team_metrics

    val_labels = np.array([1, 1, 1, 1, 0, 0])
    val_scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])  # 95% and 99% of 4 real: threshold 0.6
    labels = np.array([1, 1, 0, 0])
    scores = np.array([0.95, 0.55, 0.65, 0.2])
    out = survey_team_metrics(labels, scores, val_labels, val_scores, tp=1, fn=1, fp=1)
    assert out["purity"] == 0.5 and out["completeness"] == 0.5 and out["roc_auc"] == pytest.approx(0.75)
    assert out["at_completeness"]["0.95"] == {"threshold": 0.6, "completeness": 0.5, "purity": 0.5, "fpr": 0.5}
    assert set(out["at_completeness"]) == {"0.95", "0.99"}
    json.dumps(out)  # JSON as written in run files
