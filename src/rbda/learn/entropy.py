"""Entropy of predicted class distributions (MME's minimax term, entropy minimisation)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the entropy of the softmax distribution (nats)."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()
