"""Balanced accuracy, confusion counts, batched inference."""

from __future__ import annotations

import pytest
import torch

from rbda.errors import RbdaError
from rbda.learn.evaluate import Confusion, confusion, evaluate_rows, predict
from rbda.learn.models import StampClassifier


def test_confusion_counts_and_balanced_accuracy():
    labels = torch.tensor([1, 1, 1, 1, 0, 0])
    predicted = torch.tensor([1, 1, 1, 0, 0, 1])
    c = confusion(predicted, labels)
    assert (c.tp, c.fn, c.tn, c.fp, c.n) == (3, 1, 1, 1, 6)
    assert c.balanced_accuracy() == pytest.approx(0.5 * (3 / 4 + 1 / 2))
    assert c.as_dict() == {"bacc": pytest.approx(0.625), "n": 6, "tp": 3, "fn": 1, "tn": 1, "fp": 1}


def test_balanced_accuracy_ignores_class_imbalance():
    # predicting "bogus" for everything: plain accuracy 0.9, BACC 0.5
    c = confusion(torch.zeros(100, dtype=torch.int64), torch.tensor([1] * 10 + [0] * 90))
    assert c.balanced_accuracy() == 0.5


def test_balanced_accuracy_needs_both_classes():
    with pytest.raises(RbdaError, match="both classes"):
        Confusion(tp=3, fn=0, tn=0, fp=0).balanced_accuracy()


def test_batched_prediction_equals_one_batch_and_restores_mode():
    torch.manual_seed(0)
    model = StampClassifier("linear")
    model.train()
    stamps = torch.randn(40, 3, 21, 21)
    rows = torch.tensor([3, 1, 39, 7, 7, 20, 11])
    assert torch.equal(predict(model, stamps, rows, batch_size=2), predict(model, stamps, rows, batch_size=1000))
    assert model.training
    labels = torch.randint(0, 2, (40,))
    c = evaluate_rows(model, stamps, labels, rows, batch_size=3)
    assert c.n == rows.numel()


def test_prediction_of_no_rows_is_empty():
    model = StampClassifier("linear")
    assert predict(model, torch.randn(4, 3, 21, 21), torch.tensor([], dtype=torch.int64)).numel() == 0
