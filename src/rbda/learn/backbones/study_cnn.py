"""The study's CNN (after Ganin et al. 2016; docs/method.md section 4): 3x21x21 stamp -> 100-d feature."""

from __future__ import annotations

import torch
from torch import nn

from rbda.registry import BackboneDeclaration

BACKBONE = BackboneDeclaration(name="study_cnn", cls="Backbone", order=0,
                               help="the study's CNN (conv-bn-pool, two dense layers; 100-d feature)")

FEATURE_DIM = 100


class Backbone(nn.Module):
    """conv-bn-pool-relu, conv-bn-dropout2d-pool-relu, two fully connected layers."""

    def __init__(self, in_channels: int = 3, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.feature_dim = feature_dim
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=5),  # 64 x 17 x 17
            nn.BatchNorm2d(64),
            nn.MaxPool2d(2),  # 64 x 8 x 8
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 50, kernel_size=5),  # 50 x 4 x 4
            nn.BatchNorm2d(50),
            nn.Dropout2d(0.5),
            nn.MaxPool2d(2),  # 50 x 2 x 2
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Sequential(
            nn.Linear(50 * 2 * 2, 100),
            nn.BatchNorm1d(100),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(100, feature_dim),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))
