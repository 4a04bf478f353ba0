"""Minimax Entropy (MME, Saito et al. 2019) for semi-supervised domain adaptation.

Model: the baseline's feature extractor, then a prototype head (L2-normalised
feature, bias-free linear map, temperature 0.05) initialised at random.

Each iteration makes two optimiser updates, as the reference implementation
(VisionLearningGroup/SSDA_MME) does:

1. cross-entropy on a labelled batch, half source (class-balanced from the
   source train part), half labelled target shots (class-balanced), minus
   ``beta`` times its prediction entropy when the confidence penalty is set
   (:mod:`rbda.losses`; ``beta = 0``, the study's, is plain cross-entropy);
2. ``-lambda * H`` on a batch of unlabelled target items, with a gradient
   reversal layer between feature extractor and head. Minimising ``-lambda*H``
   moves the head to *maximise* the entropy H of the unlabelled predictions;
   the reversal layer flips the sign for the feature extractor, which
   therefore *minimises* it. Together the update realises L = CE - lambda*H
   with the minimax split of the paper.

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
from rbda.data import BalancedSampler, UniformSampler
from rbda.entropy import prediction_entropy
from rbda.losses import classification_loss
from rbda.methods.base import RunSpec, TargetAdaptation
from rbda.models import StampClassifier
from rbda.splits import unlabelled_rest


def adversarial_entropy_loss(model: StampClassifier, x: torch.Tensor, lam: float) -> torch.Tensor:
    """``-lam * H(p(x))`` through the gradient reversal layer.

    Gradient descent on it raises H with respect to the head and lowers H with
    respect to the feature extractor.
    """
    return -lam * prediction_entropy(model(x, reverse=True))


class MinimaxEntropy(TargetAdaptation):
    name = "mme"
    head_kind = "prototype"

    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        super().check_spec(spec)
        lam = spec.lam
        if lam is None or not np.isfinite(lam) or lam < 0:
            raise SettingError("lambda", f"a finite lambda >= 0 for method {cls.name!r}", lam)
        if spec.batch_size < 2:
            raise SettingError("batch_size", f"at least 2 for {cls.name!r} (half source, half target)", spec.batch_size)

    def __init__(self, spec, surveys):
        super().__init__(spec, surveys)
        self.unlabelled = unlabelled_rest(self.target.split.train, self.shots)
        self.n_target = spec.batch_size // 2
        self.n_source = spec.batch_size - self.n_target
        self.source_sampler = BalancedSampler(self.source, self.source.split.train, f"train part of {self.source.name!r}")
        self.target_sampler = BalancedSampler(self.target, self.shots, f"labelled shots of {self.target.name!r}")
        self.unlabelled_sampler = UniformSampler(
            self.target, self.unlabelled, f"unlabelled train part of {self.target.name!r} (all train items are labelled shots)"
        )

    def load_init_state(self, model: StampClassifier, state: dict) -> None:
        """The baseline's feature extractor; the prototypes keep their random initialisation."""
        backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        if not backbone:
            raise RbdaError("the initial model has no feature extractor ('backbone.*' weights)")
        model.backbone.load_state_dict(backbone)

    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {
            "source": self.source_sampler.draw((iterations, self.n_source), generator),
            "target": self.target_sampler.draw((iterations, self.n_target), generator),
            "unlabelled": self.unlabelled_sampler.draw((iterations, self.spec.batch_size), generator),
        }

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        xs, ys = self.source.batch(plan["source"][i])
        xt, yt = self.target.batch(plan["target"][i])
        yield classification_loss(model(torch.cat((xs, xt))), torch.cat((ys, yt)), self.spec.beta)
        xu, _ = self.target.batch(plan["unlabelled"][i])
        yield self.unlabelled_loss(model, xu)

    def unlabelled_loss(self, model: StampClassifier, x: torch.Tensor) -> torch.Tensor:
        """The second update's loss (MME: the minimax entropy term; ENT overrides it)."""
        return adversarial_entropy_loss(model, x, self.spec.lam)

    def describe(self) -> dict:
        return {**super().describe(), "target_unlabelled": int(self.unlabelled.size)}
