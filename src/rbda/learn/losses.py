"""Classification losses of the training methods.

:func:`classification_loss` is cross-entropy with an optional confidence
penalty (Pereyra et al. 2017; EarlySN's "entropia regulada", RELATED.md A.4):

    L = CE(y, softmax(z)) - beta * H(softmax(z)),   H(p) = -sum_c p_c log p_c,

both terms means over the batch. ``beta = 0`` (the study's setting) is plain
cross-entropy, computed by the same call as before the option existed. EarlySN's
printed code took the second term as the cross-entropy again (a loss of
1.5 x CE); here it is the entropy of the predictions, which needs no label.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rbda.learn.entropy import prediction_entropy


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """``CE - beta * H(softmax(logits))``, means over the batch; plain ``F.cross_entropy`` when ``beta == 0``."""
    ce = F.cross_entropy(logits, labels)
    if beta == 0:
        return ce
    return ce - beta * prediction_entropy(logits)
