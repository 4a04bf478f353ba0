"""Baseline: train from scratch on the source survey's train part.

Validation: the source validation part. Evaluation: the test part of every
survey given (the source's role is ``source``, the others' ``other``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from rbda.errors import SettingError
from rbda.learn.data import BalancedSampler, SurveyTensors
from rbda.learn.methods.base import Evaluation, RunSpec, TrainingMethod, cross_entropy_on
from rbda.learn.models import StampClassifier
from rbda.registry import MethodDeclaration

METHOD = MethodDeclaration(
    name="baseline", label="Baseline", cls="Baseline", order=0,
    mem_mb=8000, runtime=720, colour="0.35", line_style="-",
)


class Baseline(TrainingMethod):
    name = METHOD.name
    supports_multiclass = True

    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        super().check_spec(spec)
        for setting, value in (("target", spec.target), ("shots", spec.shots), ("lambda", spec.lam)):
            if value is not None:
                raise SettingError(setting, "no value for method 'baseline'", value)

    def __init__(self, spec, surveys):
        super().__init__(spec, surveys)
        self.sampler = BalancedSampler(self.source, self.source.split.train, f"train part of {self.source.name!r}",
                                       classes=range(self.n_classes))

    def validation(self) -> tuple[SurveyTensors, np.ndarray]:
        return self.source, self.source.split.val

    def evaluations(self) -> list[Evaluation]:
        if self.class_names is not None:  # other surveys have other classes
            return [Evaluation(self.source, "source")]
        ordered = [self.source] + [s for name, s in sorted(self.surveys.items()) if name != self.source.name]
        return [Evaluation(s, "source" if s is self.source else "other") for s in ordered]

    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"source": self.sampler.draw((iterations, self.spec.batch_size), generator)}

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        yield cross_entropy_on(model, self.source, plan["source"][i], self.spec.beta)

    def describe(self) -> dict:
        return {"source_train": int(self.source.split.train.size),
                "source_val": int(self.source.split.val.size),
                **({} if self.class_names is None else {"classes": list(self.class_names)})}
