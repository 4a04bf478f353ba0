"""Backbone ``deephits``: The "DeepHiTS layer" of the ALeRCE stamp classifier (TwoAlert, RELATED.md B.3 and E.1)."""

from __future__ import annotations

import torch
from torch import nn

from rbda.learn.backbones.rotation import (ROTATION_DROPOUT, ROTATION_FEATURE_DIM, conv_stack, dense_tail, he_initialise,
                                           mean_over_rotations, rotations)
from rbda.registry import BackboneDeclaration

BACKBONE = BackboneDeclaration(name="deephits", cls="DeepHiTS", order=1,
                               help="ALeRCE's rotation-invariant DeepHiTS layer (cyclic pooling; 64-d feature)")


class DeepHiTS(nn.Module):
    """The "DeepHiTS layer" of the ALeRCE stamp classifier (TwoAlert, RELATED.md B.3 and E.1).

    21x21xC zero-padded by 3 to 27x27; the same conv stack on each of the four
    rotations (conv 4x4 32 valid -> 24x24, conv 3x3 32 same, maxpool 2 -> 12x12,
    3 x conv 3x3 64 same, maxpool 2 -> 6x6x64), flatten 2304, dense 64; cyclic
    pooling (mean over the rotations); dense 64 with dropout; dense 64. ReLU after
    every conv and dense layer (the sources do not state their activations), He
    initialisation, dropout :data:`ROTATION_DROPOUT`, no batch normalisation.
    Invariant to rotations by multiples of 90 degrees: a rotated stamp permutes
    the four branches, and their mean does not depend on the order.
    """

    feature_dim = ROTATION_FEATURE_DIM

    def __init__(self, in_channels: int = 3, dropout: float = ROTATION_DROPOUT):
        super().__init__()
        self.pad = nn.ZeroPad2d(3)  # 21 -> 27
        self.conv = conv_stack(in_channels, same_first=False)
        self.rotation_dense = nn.Sequential(nn.Linear(64 * 6 * 6, 64), nn.ReLU(inplace=True))
        self.fc = dense_tail(dropout)
        he_initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_rotation = self.rotation_dense(torch.flatten(self.conv(rotations(self.pad(x))), 1))
        return self.fc(mean_over_rotations(per_rotation))
