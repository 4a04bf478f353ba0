"""What the rotation-invariant backbones share (deephits, earlysn): the rotations, cyclic pooling,
the conv stack and He initialisation. Not a backbone itself (it declares none), so its code is
part of every run's code hash (rbda.provenance)."""

from __future__ import annotations

import torch
from torch import nn

#: Dropout of the dense layer after cyclic pooling (TwoAlert searched {0.3, 0.5}; 0.3 is the
#: dropout of its best stamp-classifier configuration M0, RELATED.md B.4).
ROTATION_DROPOUT = 0.3
#: Feature size of the rotation-invariant backbones (the last dense 64).
ROTATION_FEATURE_DIM = 64


def rotations(x: torch.Tensor) -> torch.Tensor:
    """The stamps rotated by 0, 90, 180 and 270 degrees, stacked on the batch axis: (4N, C, H, W)."""
    return torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], dim=0)


def mean_over_rotations(y: torch.Tensor) -> torch.Tensor:
    """Cyclic pooling: (4N, ...) from :func:`rotations` -> the mean over the four rotations (N, ...)."""
    return y.reshape(4, y.shape[0] // 4, *y.shape[1:]).mean(dim=0)


def conv_stack(in_channels: int, same_first: bool) -> nn.Sequential:
    """conv 4x4 32 -> conv 3x3 32 same -> maxpool 2 -> 3 x conv 3x3 64 same -> maxpool 2, ReLU after each conv.

    ``same_first``: the 4x4 conv keeps the size, padded as TensorFlow's "same" pads an even
    kernel (1 before, 2 after); otherwise it is "valid".
    """
    relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
    return nn.Sequential(
        nn.ZeroPad2d((1, 2, 1, 2)) if same_first else nn.Identity(),
        nn.Conv2d(in_channels, 32, kernel_size=4), relu(),
        nn.Conv2d(32, 32, kernel_size=3, padding=1), relu(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1), relu(),
        nn.Conv2d(64, 64, kernel_size=3, padding=1), relu(),
        nn.Conv2d(64, 64, kernel_size=3, padding=1), relu(),
        nn.MaxPool2d(2),
    )


def dense_tail(dropout: float) -> nn.Sequential:
    """After cyclic pooling: dense 64 (ReLU) with dropout -> dense 64 (ReLU): the 64-d feature."""
    return nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(64, ROTATION_FEATURE_DIM), nn.ReLU(inplace=True),
    )


def he_initialise(module: nn.Module) -> None:
    """He (Kaiming) normal weights for ReLU, zero biases, on every conv and dense layer of ``module``.

    The rotation backbones have no batch normalisation; He initialisation keeps the
    activations' scale through their eight ReLU layers (torch's default shrinks it layer
    by layer, leaving nearly constant logits at the start of training).
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
