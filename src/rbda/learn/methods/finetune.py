"""Fine-tuning: continue training the (source, split) baseline on target shots.

Training data: the ``shots`` labelled target items per class only (an epoch
draws ``epoch_size`` items from them, class-balanced, with replacement).
BatchNorm: in training mode, as every method (the study's FT: its statistics
are re-estimated from batches of target shots, at 1 shot from 2 stamps), or
with this method's setting ``frozen_batch_norm`` (config
``method_settings.finetune``, ``rbda train --frozen-batch-norm``) in eval
mode: the baseline's running statistics normalise and stay unchanged; the
BatchNorm scales and shifts are still trained.
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
from rbda.registry import MethodDeclaration, Setting

METHOD = MethodDeclaration(
    name="finetune", label="FT", cls="FineTune", order=10,
    settings=(
        Setting("frozen_batch_norm", False, "BatchNorm layers in eval mode while fine-tuning (the baseline's "
                "running statistics kept, not re-estimated from batches of target shots); the study's FT "
                "re-estimates them"),
    ),
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

    def train_mode(self, model: StampClassifier) -> None:
        model.train()
        # a subclass declaring a method of its own without this setting fine-tunes as the study's FT
        if self.spec.settings.get("frozen_batch_norm", METHOD.setting("frozen_batch_norm").default):
            for module in model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"target": self.sampler.draw((iterations, self.spec.batch_size), generator)}

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        yield cross_entropy_on(model, self.target, plan["target"][i], self.spec.beta)
