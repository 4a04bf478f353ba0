"""Backbone ``earlysn``: EarlySN's rotation-invariant CNN (RELATED.md A.3): the rotations averaged on the conv maps."""

from __future__ import annotations

import torch
from torch import nn

from rbda.learn.backbones.rotation import (ROTATION_DROPOUT, ROTATION_FEATURE_DIM, conv_stack, he_initialise,
                                           mean_over_rotations, rotations)
from rbda.registry import BackboneDeclaration

BACKBONE = BackboneDeclaration(name="earlysn", cls="EarlySN", order=2,
                               help="EarlySN's CNN, rotations averaged on the conv maps (64-d feature)")


class EarlySN(nn.Module):
    """EarlySN's rotation-invariant CNN (RELATED.md A.3): the rotations averaged on the conv maps.

    21x21xC, four rotations through one conv stack (conv 4x4 32 same -- 4x4, not
    the printed 3x3, is what makes the table's 210,117 parameters -- conv 3x3 32,
    maxpool 2 -> 10x10, 3 x conv 3x3 64, maxpool 2 -> 5x5x64), the mean of the four
    5x5x64 maps, flatten 1600, dense 64 with dropout, dense 64 (ReLU after every
    layer). With a linear head of 5 outputs: 210,117 parameters.
    """

    feature_dim = ROTATION_FEATURE_DIM

    def __init__(self, in_channels: int = 3, dropout: float = ROTATION_DROPOUT):
        super().__init__()
        self.conv = conv_stack(in_channels, same_first=True)
        self.fc = nn.Sequential(
            nn.Linear(64 * 5 * 5, 64), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(64, ROTATION_FEATURE_DIM), nn.ReLU(inplace=True),
        )
        he_initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(mean_over_rotations(self.conv(rotations(x))), 1))
