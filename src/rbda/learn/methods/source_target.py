"""S+T: one model trained on the source plus the labelled target shots.

The standard semi-supervised domain-adaptation baseline reported beside MME
(Saito et al. 2019), set up exactly as MME (:mod:`rbda.learn.methods.mme`)
minus its minimax step, so that S+T against MME measures that step alone: in
the reference S+T is ``--method S+T`` of the same script, which skips the
second update (VisionLearningGroup/SSDA_MME ``main.py`` line 193) and keeps
the same network, head, optimiser and batches. Here too:

* the network: the baseline's feature extractor and a fresh prototype head
  (L2-normalised features, bias-free linear map, temperature 0.05) with MME's
  initialisation;
* one cross-entropy update per iteration on MME's labelled batch, half source
  (class-balanced from the source train part), half labelled target shots
  (class-balanced);
* the epoch's plan draws MME's unlabelled batch indices too, unused, so that
  with the same seeds S+T and MME get the same labelled batches epoch after
  epoch: MME at lambda 0 trains to the same weights as S+T.

With ``RunSpec.from_scratch`` (``rbda train --from-scratch``) the feature
extractor is freshly initialised instead of the baseline's. Validation and
evaluation as every adaptation method
(:class:`~rbda.learn.methods.base.TargetAdaptation`).
"""

from __future__ import annotations

from typing import Iterator

import torch

from rbda.errors import SettingError
from rbda.learn.losses import classification_loss
from rbda.learn.methods.base import MixedBatchAdaptation, RunSpec
from rbda.learn.methods.mme import load_feature_extractor
from rbda.learn.models import StampClassifier
from rbda.registry import MethodDeclaration

METHOD = MethodDeclaration(
    name="st", label="S+T", cls="SourceTarget", order=30,
    mem_mb=8000, runtime=240, colour="#7570b3", line_style="-",
)


class SourceTarget(MixedBatchAdaptation):
    name = METHOD.name
    head_kind = "prototype"
    uses_unlabelled = True  # drawn, not used: the same batches as MME (see the module docstring)

    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        super().check_spec(spec)
        if spec.lam is not None:
            raise SettingError("lambda", "no value for method 'st'", spec.lam)

    def __init__(self, spec, surveys):
        super().__init__(spec, surveys)
        self.needs_init_model = not spec.from_scratch  # instance value: read by build_model

    def build_model(self, init_state: dict | None) -> StampClassifier:
        if self.spec.from_scratch and init_state is not None:
            raise SettingError("init_model", "no initial model for 'st' from scratch", "a baseline model")
        return super().build_model(init_state)

    def load_init_state(self, model: StampClassifier, state: dict) -> None:
        load_feature_extractor(model, state)

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        x, y = self.labelled_batch(plan, i)
        yield classification_loss(model(x), y, self.spec.beta)

    def describe(self) -> dict:
        facts = {k: v for k, v in super().describe().items() if k != "target_unlabelled"}  # drawn, never used
        return {**facts, "from_scratch": self.spec.from_scratch}
