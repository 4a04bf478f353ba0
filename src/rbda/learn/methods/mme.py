"""Minimax Entropy (MME, Saito et al. 2019) for semi-supervised domain adaptation.

Model: the baseline's feature extractor, then a prototype head (L2-normalised
feature, bias-free linear map, temperature 0.05) initialised at random.

Each iteration makes two optimiser updates, as the reference implementation
(VisionLearningGroup/SSDA_MME) does:

1. cross-entropy on a labelled batch, half source (class-balanced from the
   source train part), half labelled target shots (class-balanced), minus
   ``beta`` times its prediction entropy when the confidence penalty is set
   (:mod:`rbda.learn.losses`; ``beta = 0``, the study's, is plain cross-entropy);
2. ``-lambda * H`` on a batch of unlabelled target items, with a gradient
   reversal layer between feature extractor and head. Minimising ``-lambda*H``
   moves the head to *maximise* the entropy H of the unlabelled predictions;
   the reversal layer flips the sign for the feature extractor, which
   therefore *minimises* it. Together the update realises L = CE - lambda*H
   with the minimax split of the paper.

At ``lambda = 0`` the second update has no loss and is not made (an update
with a zero gradient would still move the weights by momentum, and its forward
pass the BatchNorm statistics): MME at lambda 0 is S+T
(:mod:`rbda.learn.methods.source_target`) exactly, as in the reference, where
``--method S+T`` is the same script without step 2 (SSDA_MME ``main.py``
line 193).

BatchNorm: as in the reference, the labelled batch goes through the network
in one forward pass (its statistics mix source and target), and the
unlabelled batch in its own pass (target-only statistics). The running
statistics used at evaluation accumulate over both kinds of batch.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from rbda.errors import RbdaError, SettingError
from rbda.learn.entropy import prediction_entropy
from rbda.learn.losses import classification_loss
from rbda.learn.methods.base import MixedBatchAdaptation, RunSpec
from rbda.learn.models import StampClassifier
from rbda.registry import MethodDeclaration

METHOD = MethodDeclaration(
    name="mme", label="MME", cls="MinimaxEntropy", order=20, lambda_grid=True,
    mem_mb=8000, runtime=360, colour="#1b9e77", line_style="-",
)


def adversarial_entropy_loss(model: StampClassifier, x: torch.Tensor, lam: float) -> torch.Tensor:
    """``-lam * H(p(x))`` through the gradient reversal layer.

    Gradient descent on it raises H with respect to the head and lowers H with
    respect to the feature extractor.
    """
    return -lam * prediction_entropy(model(x, reverse=True))


def load_feature_extractor(model: StampClassifier, state: dict) -> None:
    """The baseline's feature extractor into ``model``; its head keeps its random initialisation
    (MME's and S+T's fresh prototype head)."""
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise RbdaError("the initial model has no feature extractor ('backbone.*' weights)")
    model.backbone.load_state_dict(backbone)


class MinimaxEntropy(MixedBatchAdaptation):
    name = METHOD.name
    head_kind = "prototype"
    uses_unlabelled = True

    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        super().check_spec(spec)
        lam = spec.lam
        if lam is None or not np.isfinite(lam) or lam < 0:
            raise SettingError("lambda", f"a finite lambda >= 0 for method {cls.name!r}", lam)

    def load_init_state(self, model: StampClassifier, state: dict) -> None:
        load_feature_extractor(model, state)

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        x, y = self.labelled_batch(plan, i)
        yield classification_loss(model(x), y, self.spec.beta)
        if self.spec.lam > 0:  # lambda 0: no second update (S+T)
            yield self.unlabelled_loss(model, self.unlabelled_batch(plan, i))

    def unlabelled_loss(self, model: StampClassifier, x: torch.Tensor) -> torch.Tensor:
        """The second update's loss (MME: the minimax entropy term; ENT overrides it)."""
        return adversarial_entropy_loss(model, x, self.spec.lam)
