"""DANN: domain-adversarial training (Ganin & Lempitsky 2015; Ganin et al. 2016).

Model (:class:`DomainAdversarialClassifier`): the baseline network (feature
extractor and linear head, both from the (source, split) baseline) plus a
domain classifier, a small MLP on the 100-d features (100 -> 100 -> 1,
initialised at random), behind a gradient reversal layer. The domain
classifier is a submodule of the model, so checkpoints save and restore it
with the rest; model files written by ``rbda train --model`` keep only the
classifier (:meth:`DomainAdversarialClassifier.classifier_state`).

Each iteration is one update of ``CE + lambda_d * BCE_domain``:

* CE on a labelled batch half source (class-balanced), half labelled target
  shots (class-balanced), as MME's labelled step;
* BCE of the domain classifier telling source (0) from target (1) features:
  the source half of the labelled batch against the labelled target half plus
  an unlabelled target batch of ``batch_size`` items; the mean over source
  items and the mean over target items are averaged, so the two domains weigh
  the same although the target has three times the items.
* One forward pass of the whole batch (source, labelled and unlabelled target):
  BatchNorm statistics mix both domains, as in the usual implementations.

The reversal coefficient ramps from 0 towards 1 over a fixed number of
iterations ``N`` (this method's setting ``reversal_ramp_iterations``, default
1000; config ``method_settings.dann``), as the reference implementation's warm-start reversal layer does
(thuml/Transfer-Learning-Library ``tllib/modules/grl.py`` lines 59-74,
``WarmStartGradientReverseLayer(alpha=1., lo=0., hi=1., max_iters=1000)`` in
``tllib/alignment/dann.py`` line 62): ``2 / (1 + exp(-i / N)) - 1`` at
iteration ``i`` (0.46 at ``i = N``, 0.96 at ``4 N``). The ramp depends on the
iteration only, not on ``max_epochs`` nor on where early stopping ends the run.

``lambda_d`` is the run's ``lambda`` when given (``rbda train --lambda``), else
:data:`DOMAIN_WEIGHT` (1, Ganin's unweighted sum); the workflow uses the default.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rbda.errors import RbdaError, SettingError
from rbda.learn.losses import classification_loss
from rbda.learn.methods.base import MixedBatchAdaptation, RunSpec
from rbda.learn.models import StampClassifier
from rbda.learn.reversal import reverse_gradient
from rbda.study import TRAINING_DEFAULTS
from rbda.registry import MethodDeclaration, Setting

METHOD = MethodDeclaration(
    name="dann", label="DANN", cls="DomainAdversarial", order=50,
    settings=(
        Setting("reversal_ramp_iterations", 1000, "N, the iterations over which the gradient-reversal "
                "coefficient 2/(1+exp(-i/N))-1 ramps up (reference: 1000)", ge=1),
    ),
    mem_mb=8000, runtime=360, colour="#66a61e", line_style="-",
)

#: lambda_d when the run gives no lambda.
DOMAIN_WEIGHT = 1.0
#: The warm-start schedule's slope (TLlib's ``alpha``): coefficient = 2 / (1 + exp(-ALPHA i / N)) - 1.
ALPHA = 1.0


def reversal_coefficient(iteration: int, ramp_iterations: int) -> float:
    """The reversal coefficient at ``iteration``: 0 at the start, -> 1 over ``ramp_iterations``
    (TLlib's ``WarmStartGradientReverseLayer`` with lo 0, hi 1, alpha 1, max_iters ``ramp_iterations``)."""
    return 2.0 / (1.0 + math.exp(-ALPHA * iteration / ramp_iterations)) - 1.0


class DomainAdversarialClassifier(StampClassifier):
    """Backbone + linear head + a domain classifier (MLP 100 -> 100 -> 1 logit)."""

    def __init__(self, backbone: str = TRAINING_DEFAULTS.model):
        super().__init__("linear", backbone=backbone)
        width = self.backbone.feature_dim
        self.domain_head = nn.Sequential(nn.Linear(width, 100), nn.ReLU(inplace=True), nn.Linear(100, 1))

    def domain_logits(self, features: torch.Tensor, coefficient: float) -> torch.Tensor:
        """The domain classifier's logits behind the reversal layer (gradient times ``-coefficient``)."""
        return self.domain_head(reverse_gradient(features, coefficient)).squeeze(1)

    def classifier_state(self) -> dict:
        """The weights of the stamp classifier alone (what a model file holds)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("domain_head.")}


def domain_loss(domain_logits: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy source (0) vs target (1), the two domains' means averaged."""
    per_item = F.binary_cross_entropy_with_logits(domain_logits, is_target.float(), reduction="none")
    return 0.5 * (per_item[~is_target].mean() + per_item[is_target].mean())


class DomainAdversarial(MixedBatchAdaptation):
    name = METHOD.name
    uses_unlabelled = True

    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        super().check_spec(spec)
        if spec.lam is not None and (not np.isfinite(spec.lam) or spec.lam < 0):
            raise SettingError("lambda", "a finite domain-loss weight >= 0 for 'dann' (or none: 1)", spec.lam)

    def __init__(self, spec, surveys):
        super().__init__(spec, surveys)
        self.weight = DOMAIN_WEIGHT if spec.lam is None else float(spec.lam)
        n_domain = self.n_source + self.n_target + spec.batch_size
        self.is_target = torch.arange(n_domain, device=self.source.stamps.device) >= self.n_source
        self.ramp_iterations = spec.settings["reversal_ramp_iterations"]
        self.first_iteration = 0

    def build_model(self, init_state: dict | None) -> StampClassifier:
        if init_state is None:
            raise SettingError("init_model", f"a baseline model to start {self.name!r} from")
        model = DomainAdversarialClassifier(self.spec.model)
        try:
            missing, unexpected = model.load_state_dict(init_state, strict=False)
        except RuntimeError as exc:
            raise RbdaError(f"the initial model's weights do not fit the study's network ({exc})") from None
        if unexpected or any(not k.startswith("domain_head.") for k in missing):
            raise RbdaError(f"the initial model's weights do not fit the study's network "
                            f"(missing {missing}, unexpected {unexpected})")
        return model

    def begin_epoch(self, iteration: int) -> None:
        self.first_iteration = iteration

    def coefficient(self, i: int) -> float:
        """The reversal coefficient of iteration ``i`` of the current epoch (the run's iteration count)."""
        return reversal_coefficient(self.first_iteration + i, self.ramp_iterations)

    def losses(self, model: DomainAdversarialClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        x, y = self.labelled_batch(plan, i)
        features = model.backbone(torch.cat((x, self.unlabelled_batch(plan, i))))
        ce = classification_loss(model.head(features[:len(y)]), y, self.spec.beta)
        domain = domain_loss(model.domain_logits(features, self.coefficient(i)), self.is_target)
        yield ce + self.weight * domain

    def describe(self) -> dict:
        return {**super().describe(), "domain_weight": self.weight,
                "reversal_schedule": f"2/(1+exp(-i/{self.ramp_iterations}))-1 at iteration i"}
