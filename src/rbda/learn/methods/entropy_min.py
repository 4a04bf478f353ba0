"""ENT: entropy minimisation on the unlabelled target (Grandvalet & Bengio 2005).

The baseline MME is compared with in its paper (Saito et al. 2019): the same
network (the baseline's feature extractor, a prototype head initialised at
random), the same labelled step (cross-entropy on a batch half source, half
labelled target shots), the same unlabelled batch and the same lambda grid and
selection -- but the second update is ``+lambda * H`` with **no** gradient
reversal: head and feature extractor both *minimise* the entropy of the
unlabelled predictions (MME: the head maximises it, the features minimise it).
"""

from __future__ import annotations

import torch

from rbda.learn.entropy import prediction_entropy
from rbda.learn.methods.mme import MinimaxEntropy
from rbda.learn.models import StampClassifier
from rbda.registry import MethodDeclaration

METHOD = MethodDeclaration(
    name="ent", label="ENT", cls="EntropyMinimisation", order=40, lambda_grid=True,
    mem_mb=8000, runtime=360, colour="#e7298a", line_style="--",
)


def entropy_loss(model: StampClassifier, x: torch.Tensor, lam: float) -> torch.Tensor:
    """``+lam * H(p(x))``: gradient descent lowers H for head and features alike."""
    return lam * prediction_entropy(model(x))


class EntropyMinimisation(MinimaxEntropy):
    name = METHOD.name

    def unlabelled_loss(self, model: StampClassifier, x: torch.Tensor) -> torch.Tensor:
        return entropy_loss(model, x, self.spec.lam)
