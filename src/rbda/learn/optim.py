"""The optimiser of every method: SGD with momentum.

The study's optimiser is plain SGD with momentum, one learning rate for every
weight (the default). As an option it becomes the reference MME code's
(VisionLearningGroup/SSDA_MME ``main.py``): parameter groups whose learning
rates are the base rate times a per-group multiplier (feature extractor 0.1,
head 1 there), L2 weight decay and Nesterov momentum (docs/method.md section 5).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch


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


def parameter_groups(backbone: Iterable[torch.nn.Parameter], model: torch.nn.Module,
                     backbone_scale: float, head_scale: float) -> Sequence[tuple[list, float]]:
    """Two groups: the ``backbone`` parameters, then every other parameter of ``model`` (the head, and
    any further part such as DANN's domain classifier), with their learning-rate multipliers."""
    backbone = list(backbone)
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [(backbone, backbone_scale), (rest, head_scale)]
