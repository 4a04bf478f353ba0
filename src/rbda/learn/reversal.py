"""The gradient reversal layer (Ganin & Lempitsky 2015).

Identity on the forward pass; on the backward pass the incoming gradient is
multiplied by ``-coefficient``. MME puts it between feature extractor and
prototype head on the unlabelled path (docs/method.md section 5); a domain
classifier (DANN) sits behind it too.
"""

from __future__ import annotations

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output.neg() * ctx.coefficient, None


def reverse_gradient(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """Identity forward; backward multiplies the incoming gradient by ``-coefficient``."""
    return _ReverseGradient.apply(x, coefficient)


class GradientReversal(nn.Module):
    """Gradient reversal layer (Ganin & Lempitsky 2015) as a module."""

    def __init__(self, coefficient: float = 1.0):
        super().__init__()
        self.coefficient = coefficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.coefficient)

    def extra_repr(self) -> str:
        return f"coefficient={self.coefficient}"
