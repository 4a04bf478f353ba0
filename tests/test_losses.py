"""The confidence-penalty loss CE - beta * H(softmax) (rbda.learn.losses; EarlySN's "regulated entropy")."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from rbda.errors import SettingError
from rbda.learn.losses import classification_loss
from rbda.learn.methods import method_class
from rbda.learn.methods.base import RunSpec, cross_entropy_on
from rbda.learn.models import StampClassifier
from rbda.study import TrainingOptions
from train_helpers import survey_data

LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
LABELS = torch.tensor([0, 0, 1])


def test_beta_zero_is_plain_cross_entropy_exactly():
    torch.manual_seed(0)
    logits, labels = torch.randn(32, 5), torch.randint(0, 5, (32,))
    assert torch.equal(classification_loss(logits, labels, 0.0), F.cross_entropy(logits, labels))
    assert TrainingOptions().beta == 0.0  # the study's loss


def _analytic(beta: float) -> float:
    """By hand: two-class softmax p = (1 / (1 + e^-d), ...), CE = -log p_y, H = -sum p log p."""
    total_ce = total_h = 0.0
    for (a, b), y in zip(LOGITS.tolist(), LABELS.tolist()):
        pa = 1.0 / (1.0 + math.exp(b - a))
        p = (pa, 1.0 - pa)
        total_ce += -math.log(p[y])
        total_h += -sum(q * math.log(q) for q in p)
    return total_ce / 3 - beta * total_h / 3


@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0])
def test_analytic_value_on_fixed_logits(beta):
    assert classification_loss(LOGITS, LABELS, beta).item() == pytest.approx(_analytic(beta), rel=1e-6)


def test_the_penalty_is_the_entropy_not_the_cross_entropy_again():
    """EarlySN's printed code took the second term as CE again (loss 1.5 x CE at beta 0.5)."""
    ce = F.cross_entropy(LOGITS, LABELS).item()
    loss = classification_loss(LOGITS, LABELS, 0.5).item()
    assert loss != pytest.approx(1.5 * ce) and loss != pytest.approx(0.5 * ce)
    # and the penalty does not depend on the labels, unlike a second CE
    flipped = 1 - LABELS
    diff = classification_loss(LOGITS, flipped, 0.5).item() - F.cross_entropy(LOGITS, flipped).item()
    assert diff == pytest.approx(loss - ce, rel=1e-6)


def test_the_penalty_pushes_towards_less_confident_predictions():
    logits = torch.tensor([[3.0, -3.0]], requires_grad=True)
    classification_loss(logits, torch.tensor([0]), 0.0).backward()
    plain = logits.grad.clone()
    logits.grad = None
    classification_loss(logits, torch.tensor([0]), 5.0).backward()
    # CE alone raises the correct logit's margin; a large penalty lowers it (gradient sign flips)
    assert plain[0, 0] < 0 < logits.grad[0, 0]


@pytest.fixture(scope="module")
def surveys():
    return {"des": survey_data("des", 300, 1), "hits": survey_data("hits", 300, 2)}


@pytest.mark.parametrize("method", ["baseline", "finetune", "mme"])
def test_every_method_uses_the_penalised_loss(surveys, method):
    extra = {} if method == "baseline" else {"target": "hits", "shots": 5}
    if method == "mme":
        extra["lam"] = 0.1
    extra.setdefault("target", None)
    losses = {}
    for beta in (0.0, 0.7):
        torch.manual_seed(0)
        m = method_class(method)(RunSpec(method, "des", split=0, seed=1, beta=beta, **extra), surveys)
        model = StampClassifier(m.head_kind).eval()
        plan = m.plan_epoch(1, torch.Generator().manual_seed(0))
        losses[beta] = next(m.losses(model, plan, 0)).item()  # the labelled (cross-entropy) update
    assert losses[0.7] < losses[0.0]  # minus a positive entropy


def test_cross_entropy_on_passes_beta(surveys):
    torch.manual_seed(0)
    model, survey, rows = StampClassifier("linear").eval(), surveys["des"], torch.arange(20)
    x, y = survey.batch(rows)
    assert torch.equal(cross_entropy_on(model, survey, rows), F.cross_entropy(model(x), y))
    torch.testing.assert_close(cross_entropy_on(model, survey, rows, 0.7), classification_loss(model(x), y, 0.7))


def test_a_negative_beta_is_refused():
    with pytest.raises(SettingError, match="'beta'"):
        method_class("baseline").check_spec(RunSpec("baseline", "des", None, 0, seed=1, beta=-0.1))
    with pytest.raises(SettingError, match="'beta'"):
        TrainingOptions(beta=-1.0)
