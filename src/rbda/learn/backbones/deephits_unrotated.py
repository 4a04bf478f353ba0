"""Backbone ``deephits_unrotated``: the DeepHiTS stack on the unrotated stamp, without cyclic pooling
(the rotation-invariance ablation of :mod:`rbda.learn.backbones.deephits`)."""

from __future__ import annotations

import torch

from rbda.learn.backbones.deephits import DeepHiTS
from rbda.registry import BackboneDeclaration

BACKBONE = BackboneDeclaration(name="deephits_unrotated", cls="DeepHiTSUnrotated", order=3,
                               help="the DeepHiTS stack on the unrotated stamp, no cyclic pooling: "
                                    "the rotation-invariance ablation (64-d feature)")


class DeepHiTSUnrotated(DeepHiTS):
    """The rotation-invariance ablation of :class:`DeepHiTS`: the same layers, initialisation and
    dropout (a subclass: the same stack by construction, the same parameter count) applied to the
    unrotated stamp only -- no rotated copies, no cyclic pooling. The dense layer after the conv
    stack sees one branch where DeepHiTS averages four, so a comparison of the two under one
    training recipe measures cyclic pooling and nothing else (backbone ``deephits_unrotated``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rotation_dense(torch.flatten(self.conv(self.pad(x)), 1)))
