"""Multiclass metrics: confusion matrix, accuracy, balanced accuracy, per-class P/R/F1/F-beta; and the
binary metrics survey teams report (ROC AUC, purity, completeness, FPR at fixed completeness; at the end).

Conventions (RELATED.md A.5, B.5):

- confusion matrix ``C[i, j]`` = items of true class ``i`` predicted as class ``j``
  (rows: truth; :func:`row_normalised` divides each row by its support);
- precision of class ``k`` = ``C[k, k] / sum_i C[i, k]``: undefined (NaN, with a note)
  when class ``k`` is never predicted; recall = ``C[k, k] / sum_j C[k, j]``: NaN (with a
  note) when the class has no items;
- ``F_beta = (1 + beta^2) P R / (beta^2 P + R)``; NaN when P or R is NaN, 0 when P = R = 0;
  F1 is beta = 1, EarlySN's headline is **F2 for SN** (recall weighs four times precision);
- accuracy = trace / total; balanced accuracy = mean recall over the classes that have items.

NaN stays NaN in Python; :meth:`MulticlassMetrics.as_dict` writes ``None`` (JSON has no NaN)
and lists why under ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rbda.errors import RbdaError

F_BETAS = (1.0, 2.0)  # F1 for every class, F2 (EarlySN's SN headline)


def confusion_matrix(true: Sequence[int], predicted: Sequence[int], n_classes: int) -> np.ndarray:
    """``n_classes`` x ``n_classes`` counts, rows = true class, columns = predicted class."""
    true, predicted = np.asarray(true, np.int64).reshape(-1), np.asarray(predicted, np.int64).reshape(-1)
    if true.shape != predicted.shape:
        raise RbdaError(f"confusion matrix: {true.size} labels but {predicted.size} predictions")
    for name, values in (("label", true), ("prediction", predicted)):
        bad = (values < 0) | (values >= n_classes)
        if bad.any():
            raise RbdaError(f"confusion matrix: {name} {values[bad][0]} outside 0..{n_classes - 1}")
    return np.bincount(true * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def f_beta(precision: float, recall: float, beta: float) -> float:
    """``(1 + beta^2) P R / (beta^2 P + R)``; NaN if either is NaN; 0 if both are 0."""
    if math.isnan(precision) or math.isnan(recall):
        return math.nan
    denominator = beta * beta * precision + recall
    return 0.0 if denominator == 0 else (1 + beta * beta) * precision * recall / denominator


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its support (a row with no items stays NaN)."""
    matrix = np.asarray(matrix, float)
    support = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, matrix / np.where(support > 0, support, 1), math.nan)


@dataclass
class MulticlassMetrics:
    classes: tuple[str, ...]
    matrix: np.ndarray
    accuracy: float
    balanced_accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    f: dict[float, np.ndarray]  # beta -> per-class F-beta
    notes: list[str] = field(default_factory=list)

    def per_class(self) -> dict[str, dict]:
        out = {}
        for k, name in enumerate(self.classes):
            row = {"support": int(self.matrix[k].sum()), "predicted": int(self.matrix[:, k].sum()),
                   "precision": _json(self.precision[k]), "recall": _json(self.recall[k])}
            row.update({_f_name(beta): _json(values[k]) for beta, values in self.f.items()})
            out[name] = row
        return out

    def as_dict(self) -> dict:
        return {"classes": list(self.classes), "n": int(self.matrix.sum()),
                "accuracy": _json(self.accuracy), "balanced_accuracy": _json(self.balanced_accuracy),
                "per_class": self.per_class(), "confusion": self.matrix.astype(int).tolist(),
                "notes": list(self.notes)}


def _f_name(beta: float) -> str:
    return f"f{beta:g}"


def _json(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def multiclass_metrics(matrix: np.ndarray, classes: Sequence[str], betas: Sequence[float] = F_BETAS) -> MulticlassMetrics:
    """All metrics of a confusion matrix (rows true, columns predicted) over ``classes``."""
    matrix = np.asarray(matrix, np.int64)
    k = len(classes)
    if matrix.shape != (k, k):
        raise RbdaError(f"confusion matrix of shape ({k}, {k}) for classes {list(classes)}, got {matrix.shape}")
    total = int(matrix.sum())
    if total == 0:
        raise RbdaError("multiclass metrics need at least one evaluated item, got none")
    diagonal = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    notes = []
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, diagonal / np.maximum(predicted, 1), math.nan)
        recall = np.where(support > 0, diagonal / np.maximum(support, 1), math.nan)
    for j, name in enumerate(classes):
        if predicted[j] == 0:
            notes.append(f"class {name!r} never predicted: precision undefined (NaN), F-scores NaN")
        if support[j] == 0:
            notes.append(f"class {name!r} has no items: recall undefined (NaN), left out of balanced accuracy")
    present = support > 0
    f = {float(beta): np.array([f_beta(p, r, float(beta)) for p, r in zip(precision, recall)]) for beta in betas}
    return MulticlassMetrics(classes=tuple(classes), matrix=matrix, accuracy=float(diagonal.sum() / total),
                             balanced_accuracy=float(recall[present].mean()), precision=precision,
                             recall=recall, f=f, notes=notes)


def metrics_of_predictions(true, predicted, classes: Sequence[str], betas: Sequence[float] = F_BETAS) -> MulticlassMetrics:
    """:func:`multiclass_metrics` of label and prediction indices into ``classes``."""
    return multiclass_metrics(confusion_matrix(true, predicted, len(classes)), classes, betas)


# --- the metrics survey teams report (binary task) ----------------------------------------------------
#
# Survey teams choose a threshold and report the operating point: Rubin's reliability model purity and
# completeness at its threshold, ATLAS the false-positive rate at 1% missed detections, ZTF's braai and
# BTSbot ROC AUC and FPR/FNR at their cut. Real (label 1) is the positive class throughout.

#: Completeness (recall of real) at which the false-positive rate is reported, thresholds set on validation.
COMPLETENESS_TARGETS = (0.95, 0.99)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` (higher = more real) against 0/1 ``labels``: the probability that
    a real item outscores a bogus one, ties counted half (Mann-Whitney U); None without both classes."""
    from scipy.stats import rankdata

    labels = np.asarray(labels)
    n_real, n_bogus = int((labels == 1).sum()), int((labels == 0).sum())
    if n_real == 0 or n_bogus == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels == 1].sum() - n_real * (n_real + 1) / 2) / (n_real * n_bogus))


def threshold_for_completeness(labels: np.ndarray, scores: np.ndarray, completeness: float) -> float | None:
    """The highest threshold at which at least ``completeness`` of the real items score at or above it
    (None without real items)."""
    real = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(labels) == 1])[::-1]
    if real.size == 0:
        return None
    return float(real[int(np.ceil(completeness * real.size)) - 1])


def operating_point(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Completeness (recall of real), purity (precision of real) and false-positive rate of calling real every
    item scoring at or above ``threshold`` (None where a ratio has no denominator)."""
    labels = np.asarray(labels)
    said_real = np.asarray(scores) >= threshold
    tp = int((said_real & (labels == 1)).sum())
    fp = int((said_real & (labels == 0)).sum())
    real, bogus = int((labels == 1).sum()), int((labels == 0).sum())
    return {"threshold": float(threshold), "completeness": tp / real if real else None,
            "purity": tp / (tp + fp) if tp + fp else None, "fpr": fp / bogus if bogus else None}


def survey_team_metrics(labels: np.ndarray, scores: np.ndarray, val_labels: np.ndarray, val_scores: np.ndarray,
                        tp: int, fn: int, fp: int, targets=COMPLETENESS_TARGETS) -> dict:
    """ROC AUC of ``scores`` (p_real) on the evaluated part; purity and completeness of the model's own call
    (argmax, the confusion counts ``tp``, ``fn``, ``fp`` of BACC); and per completeness target the operating
    point on the evaluated part at the threshold chosen on the validation part (``val_*``)."""
    at = {}
    for target in targets:
        threshold = threshold_for_completeness(val_labels, val_scores, target)
        at[f"{target:g}"] = None if threshold is None else operating_point(labels, scores, threshold)
    return {"roc_auc": roc_auc(labels, scores), "purity": tp / (tp + fp) if tp + fp else None,
            "completeness": tp / (tp + fn) if tp + fn else None, "at_completeness": at}
