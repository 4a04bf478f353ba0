"""The optimiser of every method (SGD with momentum) and its learning-rate schedules.

The study's optimiser is plain SGD with momentum, one learning rate for every
weight, halved every ``lr_halve_every`` iterations (the defaults). As options
it becomes the reference MME code's (VisionLearningGroup/SSDA_MME ``main.py``
lines 87-95 and 139-142; CDAC's ``main.py`` lines 95-103 and 137-138 are the
same): three parameter groups whose learning rates are the base rate times a
multiplier -- the feature extractor's convolutional part ``multi`` = 0.1, its
dense layers ``10 * multi`` = 1 (the keys containing ``classifier`` of its
AlexNet/VGG feature extractors are their dense layers fc6, fc7), the head 1 --
L2 weight decay 0.0005 and Nesterov momentum; and its learning-rate decay
``inv`` (``utils/lr_schedule.py`` lines 4-12, called every step in
``main.py`` lines 164-167): ``lr * (1 + gamma * i) ** -power`` with gamma
0.0001 and power 0.75 (docs/method.md, "What every method shares").
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

#: The reference's ``inv_lr_scheduler`` constants (SSDA_MME ``utils/lr_schedule.py`` line 4).
INV_GAMMA = 0.0001
INV_POWER = 0.75


def inv_decay(iteration: int) -> float:
    """The reference's decay factor at ``iteration``: ``(1 + INV_GAMMA * iteration) ** -INV_POWER``."""
    return (1 + INV_GAMMA * iteration) ** (-INV_POWER)


class MomentumSGD:
    """SGD with momentum over parameter groups, updated by torch's own SGD kernel (``torch.optim.sgd.sgd``).

    ``groups``: an iterable of parameters (one group, multiplier 1), or a
    sequence of ``(parameters, lr_scale)`` pairs. The learning rate of group
    ``g`` is ``lr * lr_scale[g]``; the loop sets :attr:`lr` for its schedule.

    The same update as ``torch.optim.SGD`` with one param group per group, its
    ``lr`` set to ``lr * lr_scale``, and the same ``momentum``,
    ``weight_decay`` and ``nesterov`` (tests check they agree exactly).
    Constructing ``torch.optim.SGD`` imports TorchDynamo, which costs 0.7-2 s
    in every training process; the workflow runs hundreds of short ones.
    """

    def __init__(self, groups, lr: float, momentum: float, weight_decay: float = 0.0, nesterov: bool = False):
        groups = list(groups)
        if not groups or isinstance(groups[0], torch.Tensor):
            groups = [(groups, 1.0)]
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs a momentum > 0")
        self.groups: list[tuple[list[torch.Tensor], float]] = [(list(params), float(scale)) for params, scale in groups]
        self.params = [p for params, _ in self.groups for p in params]
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.sgd import sgd

        start = 0
        for params, scale in self.groups:
            live = [start + j for j, p in enumerate(params) if p.grad is not None]
            start += len(params)
            if not live:
                continue
            buffers = [self.buffers[i] for i in live]
            sgd([self.params[i] for i in live], [self.params[i].grad for i in live], buffers,
                weight_decay=self.weight_decay, momentum=self.momentum, lr=self.lr * scale, dampening=0.0,
                nesterov=self.nesterov, maximize=False)
            for i, buffer in zip(live, buffers):
                self.buffers[i] = buffer

    def state_dict(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "nesterov": self.nesterov, "lr_scales": [scale for _, scale in self.groups],
                "buffers": list(self.buffers)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["buffers"]) != len(self.params):
            raise ValueError("optimizer state of another model")
        self.lr, self.momentum = state["lr"], state["momentum"]
        self.weight_decay = state.get("weight_decay", 0.0)
        self.nesterov = state.get("nesterov", False)
        scales = state.get("lr_scales", [1.0] * len(self.groups))
        if len(scales) != len(self.groups):
            raise ValueError("optimizer state with another number of parameter groups")
        self.groups = [(params, float(scale)) for (params, _), scale in zip(self.groups, scales)]
        self.buffers = [None if b is None else b.to(p.device) for b, p in zip(state["buffers"], self.params)]


def dense_parameters(backbone: nn.Module) -> list[nn.Parameter]:
    """The parameters of the feature extractor's dense part: its ``Linear`` layers and the
    ``BatchNorm1d`` layers that normalise them (the reference's ``classifier`` keys)."""
    return [p for module in backbone.modules() if isinstance(module, (nn.Linear, nn.BatchNorm1d))
            for p in module.parameters(recurse=False)]


def parameter_groups(backbone: nn.Module, model: nn.Module, backbone_scale: float, dense_scale: float,
                     head_scale: float) -> Sequence[tuple[list, float]]:
    """Three groups with their learning-rate multipliers: the feature extractor's convolutional part
    (every ``backbone`` parameter that is not dense), its dense layers (:func:`dense_parameters`), then
    every other parameter of ``model`` (the head, and any further part such as DANN's domain classifier)."""
    dense = dense_parameters(backbone)
    dense_ids = {id(p) for p in dense}
    convolutional = [p for p in backbone.parameters() if id(p) not in dense_ids]
    backbone_ids = {id(p) for p in backbone.parameters()}
    rest = [p for p in model.parameters() if id(p) not in backbone_ids]
    return [(convolutional, backbone_scale), (dense, dense_scale), (rest, head_scale)]
