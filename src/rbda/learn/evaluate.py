"""Balanced accuracy, confusion counts and batched inference.

Inference runs over row indices into a survey's in-memory stamp tensor, in
large batches under :func:`torch.inference_mode`, with the model in eval mode
(BatchNorm running statistics, no dropout). The model's previous mode is
restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rbda.errors import RbdaError

EVAL_BATCH_SIZE = 512  # larger batches run slower on CPU (cache), measured 256-4096


@dataclass(frozen=True)
class Confusion:
    """Counts with 1 = real as the positive class."""

    tp: int
    fn: int
    tn: int
    fp: int

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.tn + self.fp

    def balanced_accuracy(self) -> float:
        """Mean of the recall of the real class and the recall of the bogus class."""
        if self.tp + self.fn == 0 or self.tn + self.fp == 0:
            raise RbdaError(
                f"balanced accuracy needs both classes among the evaluated items "
                f"(real: {self.tp + self.fn}, bogus: {self.tn + self.fp})"
            )
        return 0.5 * (self.tp / (self.tp + self.fn) + self.tn / (self.tn + self.fp))

    def as_dict(self) -> dict[str, int | float]:
        return {"bacc": self.balanced_accuracy(), "n": self.n,
                "tp": self.tp, "fn": self.fn, "tn": self.tn, "fp": self.fp}


def confusion(predicted: torch.Tensor, labels: torch.Tensor) -> Confusion:
    """Confusion counts of 0/1 predictions against 0/1 labels (one device sync)."""
    real, said_real = labels == 1, predicted == 1
    # four sums in one tensor (not bincount: it has no deterministic CUDA kernel)
    tp, fn, tn, fp = torch.stack([(real & said_real).sum(), (real & ~said_real).sum(),
                                  (~real & ~said_real).sum(), (~real & said_real).sum()]).tolist()
    return Confusion(tp=tp, fn=fn, tn=tn, fp=fp)


def _batched(model: torch.nn.Module, stamps: torch.Tensor, rows: torch.Tensor, of_logits,
             empty: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``of_logits(model(batch))`` over ``stamps[rows]`` in batches, eval mode, inference mode;
    the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.inference_mode():
            for start in range(0, rows.numel(), batch_size):
                batch = stamps[rows[start : start + batch_size]]  # keeps a channels-last layout
                outputs.append(of_logits(model(batch)))
    finally:
        model.train(was_training)
    return torch.cat(outputs) if outputs else empty


def predict(
    model: torch.nn.Module,
    stamps: torch.Tensor,
    rows: torch.Tensor,
    batch_size: int = EVAL_BATCH_SIZE,
) -> torch.Tensor:
    """Predicted class (argmax of the logits) for ``stamps[rows]``, batched."""
    return _batched(model, stamps, rows, lambda logits: logits.argmax(dim=1),
                    torch.empty(0, dtype=torch.int64, device=stamps.device), batch_size)


def evaluate_rows(
    model: torch.nn.Module,
    stamps: torch.Tensor,
    labels: torch.Tensor,
    rows: torch.Tensor,
    batch_size: int = EVAL_BATCH_SIZE,
) -> Confusion:
    """Confusion counts of ``model`` on ``stamps[rows]`` against ``labels[rows]``."""
    predicted = predict(model, stamps, rows, batch_size)
    return confusion(predicted, labels.index_select(0, rows))


def multiclass_rows(model: torch.nn.Module, survey, rows: torch.Tensor, class_names):
    """:class:`rbda.learn.metrics.MulticlassMetrics` of ``model`` on ``survey``'s ``rows`` (task: multiclass)."""
    from rbda.learn.metrics import metrics_of_predictions

    predicted = predict(model, survey.stamps, rows)
    return metrics_of_predictions(survey.labels.index_select(0, rows).cpu().numpy(), predicted.cpu().numpy(),
                                  class_names)


#: Most confident errors per kind a baseline records on its own test part (run JSON ``errors``).
CONFIDENT_ERRORS = 8


def p_real(model: torch.nn.Module, stamps: torch.Tensor, rows: torch.Tensor,
           batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Softmax probability of class 1 (real) for ``stamps[rows]``, batched, eval mode."""
    return _batched(model, stamps, rows, lambda logits: torch.softmax(logits.float(), dim=1)[:, 1],
                    torch.empty(0, device=stamps.device), batch_size)


def confident_errors(method, model: torch.nn.Module, k: int = CONFIDENT_ERRORS) -> dict | None:
    """A baseline's ``k`` most confident false positives and false negatives on its own test part.

    ``{"survey", "part", "false_positives": [{"row", "p_real"}...], "false_negatives": [...]}``,
    ``row`` an index into the survey's Parquet (as the splits), most confident first (highest
    p_real for bogus called real, lowest for real called bogus; ties by row). An error is a
    wrong argmax, as in the confusion counts. None for other methods.
    """
    if method.spec.method != "baseline":
        return None
    ev = next(e for e in method.evaluations() if e.role == "source")
    idx = np.asarray(ev.survey.split.part(ev.part), dtype=np.int64)
    rows = ev.survey.rows(idx)
    logits_p = p_real(model, ev.survey.stamps, rows).cpu().numpy().astype(np.float64)
    said_real = predict(model, ev.survey.stamps, rows).cpu().numpy() == 1
    labels = ev.survey.labels_np[idx]
    out = {"survey": ev.survey.name, "part": ev.part}
    for key, wrong, sign in (("false_positives", (labels == 0) & said_real, -1.0),
                             ("false_negatives", (labels == 1) & ~said_real, 1.0)):
        chosen = np.flatnonzero(wrong)
        chosen = chosen[np.lexsort((idx[chosen], sign * logits_p[chosen]))][:k]
        out[key] = [{"row": int(idx[i]), "p_real": round(float(logits_p[i]), 6)} for i in chosen]
    return out


def evaluate_part(model: torch.nn.Module, survey, part: str) -> dict:
    """Binary task: confusion counts and BACC of ``model`` on ``survey``'s ``part``, and the metrics survey
    teams report, ``survey_metrics`` (:func:`rbda.learn.metrics.survey_team_metrics`): ROC AUC, purity and
    completeness of the model's call, and the operating points at 95% and 99% completeness with thresholds
    chosen on the survey's validation part (its whole split part, as a survey team sets its cut on its own
    labelled validation set). Used by training runs and ``rbda evaluate`` alike."""
    from rbda.learn.metrics import survey_team_metrics

    idx = np.asarray(survey.split.part(part), dtype=np.int64)
    rows = survey.rows(idx)
    counts = evaluate_rows(model, survey.stamps, survey.labels, rows)
    val_idx = np.asarray(survey.split.part("val"), dtype=np.int64)
    scores = p_real(model, survey.stamps, rows).cpu().numpy().astype(np.float64)
    val_scores = p_real(model, survey.stamps, survey.rows(val_idx)).cpu().numpy().astype(np.float64)
    team = survey_team_metrics(survey.labels_np[idx], scores, survey.labels_np[val_idx], val_scores,
                               tp=counts.tp, fn=counts.fn, fp=counts.fp)
    return {**counts.as_dict(), "survey_metrics": team}


def evaluate_method(method, model: torch.nn.Module) -> list[dict]:
    """On every test part the method names: :func:`evaluate_part` (multiclass: rbda.learn.metrics' metrics)."""
    results = []
    for ev in method.evaluations():
        entry = {"survey": ev.survey.name, "role": ev.role, "part": ev.part}
        if getattr(method, "class_names", None) is not None:
            rows = ev.survey.rows(ev.survey.split.part(ev.part))
            metrics = multiclass_rows(model, ev.survey, rows, method.class_names)
            results.append({**entry, "bacc": metrics.balanced_accuracy, "multiclass": metrics.as_dict()})
            continue
        results.append({**entry, **evaluate_part(model, ev.survey, ev.part)})
    return results
