"""S+T: one model trained on the source plus the labelled target shots.

The standard semi-supervised domain-adaptation baseline reported beside MME
(Saito et al. 2019). Each iteration is one cross-entropy update on a batch
half source (class-balanced from the source train part), half labelled target
shots (class-balanced) -- MME's labelled step, without its entropy step and
with the baseline's linear head.

Start: the whole (source, split) baseline (head included), as fine-tuning;
with ``RunSpec.from_scratch`` (``rbda train --from-scratch``) a freshly
initialised network instead. Validation and evaluation as every adaptation
method (:class:`~rbda.learn.methods.base.TargetAdaptation`).
"""

from __future__ import annotations

from typing import Iterator

import torch

from rbda.errors import SettingError
from rbda.learn.losses import classification_loss
from rbda.learn.methods.base import MixedBatchAdaptation, RunSpec
from rbda.learn.models import StampClassifier
from rbda.registry import MethodDeclaration

METHOD = MethodDeclaration(
    name="st", label="S+T", cls="SourceTarget", order=30,
    mem_mb=8000, runtime=240, colour="#7570b3", line_style="-",
)


class SourceTarget(MixedBatchAdaptation):
    name = METHOD.name

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

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        x, y = self.labelled_batch(plan, i)
        yield classification_loss(model(x), y, self.spec.beta)

    def describe(self) -> dict:
        return {**super().describe(), "from_scratch": self.spec.from_scratch}
