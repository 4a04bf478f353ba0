"""Fine-tuning: continue training the (source, split) baseline on target shots.

Training data: the ``shots`` labelled target items per class only (an epoch
draws ``epoch_size`` items from them, class-balanced, with replacement).
Validation: ``val_shots`` labelled items per class from the target's
validation part. Evaluation: source and target test parts.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from rbda.errors import SettingError
from rbda.methods.base import BalancedSampler, Evaluation, RunSpec, SurveyData, TrainingMethod, cross_entropy_on
from rbda.models import StampClassifier


class FineTune(TrainingMethod):
    name = "finetune"
    needs_init_model = True
    needs_target = True

    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        super().check_spec(spec)
        if spec.lam is not None:
            raise SettingError("lambda", "no value for method 'finetune'", spec.lam)

    def __init__(self, spec, surveys):
        super().__init__(spec, surveys)
        self.shots = self.target_shots()
        self.val_rows = self.target_validation_rows()
        self.sampler = BalancedSampler(self.target, self.shots, f"labelled shots of {self.target.name!r}")

    def validation(self) -> tuple[SurveyData, np.ndarray]:
        return self.target, self.val_rows

    def evaluations(self) -> list[Evaluation]:
        return [Evaluation(self.source, "source"), Evaluation(self.target, "target")]

    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"target": self.sampler.draw((iterations, self.spec.batch_size), generator)}

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        yield cross_entropy_on(model, self.target, plan["target"][i])

    def describe(self) -> dict:
        return {"target_labelled": int(self.shots.size), "target_val": int(self.val_rows.size)}
