"""Fine-tuning: continue training the (source, split) baseline on target shots.

Training data: the ``shots`` labelled target items per class only (an epoch
draws ``epoch_size`` items from them, class-balanced, with replacement).
Validation: ``val_shots`` labelled items per class from the target's
validation part. Evaluation: source and target test parts.
"""

from __future__ import annotations

from typing import Iterator

import torch

from rbda.errors import SettingError
from rbda.learn.data import BalancedSampler
from rbda.learn.methods.base import RunSpec, TargetAdaptation, cross_entropy_on
from rbda.learn.models import StampClassifier
from rbda.registry import MethodDeclaration

METHOD = MethodDeclaration(
    name="finetune", label="FT", cls="FineTune", order=10,
    mem_mb=4000, runtime=120, colour="#d95f02", line_style="-",
)


class FineTune(TargetAdaptation):
    name = METHOD.name

    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        super().check_spec(spec)
        if spec.lam is not None:
            raise SettingError("lambda", "no value for method 'finetune'", spec.lam)

    def __init__(self, spec, surveys):
        super().__init__(spec, surveys)
        self.sampler = BalancedSampler(self.target, self.shots, f"labelled shots of {self.target.name!r}")

    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"target": self.sampler.draw((iterations, self.spec.batch_size), generator)}

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        yield cross_entropy_on(model, self.target, plan["target"][i], self.spec.beta)
