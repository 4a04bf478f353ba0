"""S+T: one model trained on the source plus the labelled target shots.

The standard semi-supervised domain-adaptation baseline reported beside MME
(Saito et al. 2019). Each iteration is one cross-entropy update on a batch
half source (class-balanced from the source train part), half labelled target
shots (class-balanced) -- MME's labelled step, without its entropy step and
with the baseline's linear head.

Start: the whole (source, split) baseline (head included), as fine-tuning;
with ``RunSpec.from_scratch`` (``rbda train --from-scratch``) a freshly
initialised network instead. Validation and evaluation as every adaptation
method (:class:`~rbda.methods.base.TargetAdaptation`).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.nn import functional as F

from rbda.data import BalancedSampler
from rbda.errors import SettingError
from rbda.methods.base import RunSpec, TargetAdaptation
from rbda.models import StampClassifier


class SourceTarget(TargetAdaptation):
    name = "st"

    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        super().check_spec(spec)
        if spec.lam is not None:
            raise SettingError("lambda", "no value for method 'st'", spec.lam)
        if spec.batch_size < 2:
            raise SettingError("batch_size", "at least 2 for 'st' (half source, half target)", spec.batch_size)

    def __init__(self, spec, surveys):
        super().__init__(spec, surveys)
        self.needs_init_model = not spec.from_scratch  # instance value: read by build_model
        self.n_target = spec.batch_size // 2
        self.n_source = spec.batch_size - self.n_target
        self.source_sampler = BalancedSampler(self.source, self.source.split.train, f"train part of {self.source.name!r}")
        self.target_sampler = BalancedSampler(self.target, self.shots, f"labelled shots of {self.target.name!r}")

    def build_model(self, init_state: dict | None) -> StampClassifier:
        if self.spec.from_scratch and init_state is not None:
            raise SettingError("init_model", "no initial model for 'st' from scratch", "a baseline model")
        return super().build_model(init_state)

    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {
            "source": self.source_sampler.draw((iterations, self.n_source), generator),
            "target": self.target_sampler.draw((iterations, self.n_target), generator),
        }

    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        xs, ys = self.source.batch(plan["source"][i])
        xt, yt = self.target.batch(plan["target"][i])
        yield F.cross_entropy(model(torch.cat((xs, xt))), torch.cat((ys, yt)))

    def describe(self) -> dict:
        return {**super().describe(), "from_scratch": self.spec.from_scratch}
