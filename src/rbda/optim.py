"""The optimiser of every method: SGD with momentum (the study's)."""

from __future__ import annotations

import torch


class MomentumSGD:
    """SGD with momentum, updated by torch's own SGD kernel (``torch.optim.sgd.sgd``).

    The same update as ``torch.optim.SGD(params, lr, momentum)`` (a test
    checks they agree exactly). Constructing ``torch.optim.SGD`` imports
    TorchDynamo, which costs 0.7-2 s in every training process; the workflow
    runs hundreds of short ones.
    """

    def __init__(self, params, lr: float, momentum: float):
        self.params = list(params)
        self.lr = lr
        self.momentum = momentum
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.sgd import sgd

        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        buffers = [self.buffers[i] for i in live]
        sgd([self.params[i] for i in live], [self.params[i].grad for i in live], buffers,
            weight_decay=0.0, momentum=self.momentum, lr=self.lr, dampening=0.0, nesterov=False, maximize=False)
        for i, buffer in zip(live, buffers):
            self.buffers[i] = buffer

    def state_dict(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "buffers": list(self.buffers)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["buffers"]) != len(self.params):
            raise ValueError("optimizer state of another model")
        self.lr, self.momentum = state["lr"], state["momentum"]
        self.buffers = [None if b is None else b.to(p.device) for b, p in zip(state["buffers"], self.params)]
