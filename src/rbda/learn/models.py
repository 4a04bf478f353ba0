"""Networks of the study (docs/method.md section 4).

* :class:`Backbone` -- the feature extractor of the baseline CNN (after Ganin
  et al. 2016): 3x21x21 stamp -> 100-d feature (backbone ``study_cnn``).
* :class:`DeepHiTS` -- the rotation-invariant "DeepHiTS layer" of the ALeRCE
  stamp classifier (RELATED.md B.3, E.1; backbone ``deephits``): 64-d feature.
* :class:`DeepHiTSUnrotated` -- the same stack on the unrotated stamp, without cyclic pooling
  (the rotation-invariance ablation; backbone ``deephits_unrotated``): 64-d feature.
* :class:`EarlySN` -- EarlySN's variant, the rotations averaged on the conv
  maps (RELATED.md A.3; backbone ``earlysn``): 64-d feature.
* :data:`BACKBONE_CLASSES` -- backbone name (:data:`rbda.study.BACKBONES`) -> class.
* :class:`LinearHead` -- the baseline classifier, linear 100 -> 2.
* :class:`PrototypeHead` -- the MME classifier: L2-normalised feature, a
  bias-free linear map whose rows are the class prototypes, divided by a
  temperature (0.05).
* :class:`GradientReversal` -- identity on the forward pass, gradient times
  ``-coefficient`` on the backward pass.
* :class:`StampClassifier` -- backbone + head; ``forward(x, reverse=...)``
  inserts the reversal layer between the two.

Models return logits; the softmax is applied by the losses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from rbda.atomic import atomic_path
from rbda.errors import InputFileError, RbdaError
from rbda.learn.reversal import GradientReversal
from rbda.study import BACKBONES, TRAINING_DEFAULTS

FEATURE_DIM = 100
N_CLASSES = 2
MME_TEMPERATURE = 0.05
HEAD_KINDS = ("linear", "prototype")


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


def _conv_stack(in_channels: int, same_first: bool) -> nn.Sequential:
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


def _dense_tail(dropout: float) -> nn.Sequential:
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
        self.conv = _conv_stack(in_channels, same_first=False)
        self.rotation_dense = nn.Sequential(nn.Linear(64 * 6 * 6, 64), nn.ReLU(inplace=True))
        self.fc = _dense_tail(dropout)
        he_initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_rotation = self.rotation_dense(torch.flatten(self.conv(rotations(self.pad(x))), 1))
        return self.fc(mean_over_rotations(per_rotation))


class DeepHiTSUnrotated(DeepHiTS):
    """The rotation-invariance ablation of :class:`DeepHiTS`: the same layers, initialisation and
    dropout (a subclass: the same stack by construction, the same parameter count) applied to the
    unrotated stamp only -- no rotated copies, no cyclic pooling. The dense layer after the conv
    stack sees one branch where DeepHiTS averages four, so a comparison of the two under one
    training recipe measures cyclic pooling and nothing else (backbone ``deephits_unrotated``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rotation_dense(torch.flatten(self.conv(self.pad(x)), 1)))


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
        self.conv = _conv_stack(in_channels, same_first=True)
        self.fc = nn.Sequential(
            nn.Linear(64 * 5 * 5, 64), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(64, ROTATION_FEATURE_DIM), nn.ReLU(inplace=True),
        )
        he_initialise(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(mean_over_rotations(self.conv(rotations(x))), 1))


#: Backbone name (``training.model``, :data:`rbda.study.BACKBONES`) -> class; a test checks the keys.
BACKBONE_CLASSES = {"study_cnn": Backbone, "deephits": DeepHiTS, "earlysn": EarlySN,
                    "deephits_unrotated": DeepHiTSUnrotated}


def make_backbone(name: str) -> nn.Module:
    """A fresh backbone called ``name`` (one of :data:`rbda.study.BACKBONES`)."""
    if name not in BACKBONE_CLASSES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")
    return BACKBONE_CLASSES[name]()


class LinearHead(nn.Module):
    """The baseline classifier: linear feature_dim -> 2 (logits)."""

    def __init__(self, feature_dim: int = FEATURE_DIM, n_classes: int = N_CLASSES):
        super().__init__()
        self.linear = nn.Linear(feature_dim, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class PrototypeHead(nn.Module):
    """Cosine-similarity classifier of MME: ``W @ normalize(f) / T`` (no bias)."""

    def __init__(
        self,
        feature_dim: int = FEATURE_DIM,
        n_classes: int = N_CLASSES,
        temperature: float = MME_TEMPERATURE,
    ):
        super().__init__()
        self.prototypes = nn.Linear(feature_dim, n_classes, bias=False)
        self.temperature = temperature

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.prototypes(F.normalize(features, dim=1)) / self.temperature


def make_head(kind: str, feature_dim: int = FEATURE_DIM, n_classes: int = N_CLASSES) -> nn.Module:
    if kind == "linear":
        return LinearHead(feature_dim, n_classes)
    if kind == "prototype":
        return PrototypeHead(feature_dim, n_classes)
    raise ValueError(f"unknown head kind {kind!r}; expected one of {HEAD_KINDS}")


class StampClassifier(nn.Module):
    """Backbone followed by a head; ``reverse=True`` puts a reversal layer between them."""

    def __init__(self, head_kind: str = "linear", backbone: str = TRAINING_DEFAULTS.model,
                 n_classes: int = N_CLASSES):
        super().__init__()
        self.head_kind = head_kind
        self.backbone_name = backbone
        self.backbone = make_backbone(backbone)
        self.head = make_head(head_kind, self.backbone.feature_dim, n_classes)
        self.reversal = GradientReversal(1.0)

    def forward(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        features = self.backbone(x)
        if reverse:
            features = self.reversal(features)
        return self.head(features)

    def classifier_state(self) -> dict:
        """The weights a model file holds (a subclass with training-only parts leaves them out)."""
        return self.state_dict()


MODEL_FORMAT = "rbda.model/1"
#: Payload keys: format, head_kind, backbone (a file without it is of the study CNN), facts (run identity: method, source, target, split, shots,
#: lambda, seed), training (the run's test evaluations, versions, ...), preprocessing (version),
#: preprocessing_settings, weights_sha256, state_dict.


def weights_hash(state_dict: dict) -> str:
    """SHA-256 of the weights: every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_model_file(path: str | Path, model: StampClassifier, facts: dict, training: dict | None = None) -> None:
    """Write the model's weights, the facts of the run that made it and the preprocessing version, atomically."""
    from rbda.ingest.preprocess import PREPROCESSING, PREPROCESSING_VERSION

    state = {k: v.detach().cpu() for k, v in model.classifier_state().items()}
    # plain JSON values only (a weights-only load accepts nothing else; torch's version is an object)
    plain = lambda value: json.loads(json.dumps(value, default=str))  # noqa: E731
    payload = {"format": MODEL_FORMAT, "head_kind": model.head_kind, "backbone": model.backbone_name, "facts": plain(dict(facts)),
               "training": plain(dict(training or {})), "preprocessing": PREPROCESSING_VERSION,
               "preprocessing_settings": dict(PREPROCESSING), "weights_sha256": weights_hash(state),
               "state_dict": state}
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save(payload, tmp)


def load_model_file(path: str | Path, expect_head: str | None = None, expect_backbone: str | None = None) -> dict:
    """Read a file written by :func:`save_model_file`; returns its payload.

    Errors name the file and say what was expected: a missing file, another
    kind of file, weights that do not match their recorded hash, a model
    trained with another preprocessing version than this rbda's, or (with
    ``expect_head``) a model of another head kind, or (with ``expect_backbone``)
    a model of another backbone (``training.model``). A file written before
    models recorded their preprocessing is of version 1 (the first).
    """
    from rbda.ingest.preprocess import PREPROCESSING_VERSION

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "model file not found (train the baseline first: `rbda train --method baseline ... --model FILE`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file it cannot read
        raise InputFileError(path, f"a model file written by `rbda train --model` ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise InputFileError(path, f"a model file of format {MODEL_FORMAT!r}")
    if payload.get("head_kind") not in HEAD_KINDS:
        raise InputFileError(path, f"head kind one of {HEAD_KINDS}", where="head_kind")
    backbone = payload.setdefault("backbone", "study_cnn")  # files written before backbones were selectable
    if backbone not in BACKBONES:
        raise InputFileError(path, f"backbone one of {BACKBONES}", where="backbone")
    if not isinstance(payload.get("state_dict"), dict):
        raise InputFileError(path, "the model's weights (a state_dict)", where="state_dict")
    version = payload.setdefault("preprocessing", 1)
    if version != PREPROCESSING_VERSION:
        raise InputFileError(
            path, f"a model trained on stamps of preprocessing version {PREPROCESSING_VERSION} (this rbda's), "
                  f"but it was trained with preprocessing version {version!r}: its scores on stamps "
                  f"preprocessed now would be meaningless; retrain it with this rbda", where="preprocessing")
    recorded = payload.get("weights_sha256")
    payload["weights_sha256"] = actual = weights_hash(payload["state_dict"])
    if recorded is not None and recorded != actual:
        raise InputFileError(path, f"weights matching their recorded SHA-256 {recorded[:12]}..., got "
                                   f"{actual[:12]}... (the file was altered)", where="weights_sha256")
    payload.setdefault("facts", {})
    payload.setdefault("training", {})
    if expect_head is not None and payload["head_kind"] != expect_head:
        raise InputFileError(
            path, f"a model with a {expect_head!r} head, but it has a {payload['head_kind']!r} head"
        )
    if expect_backbone is not None and backbone != expect_backbone:
        raise InputFileError(
            path, f"a model of backbone {expect_backbone!r} (training.model / --backbone), but it was trained "
                  f"with backbone {backbone!r}; train its baseline with the same backbone")
    return payload


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` for inference, in place: each BatchNorm that directly follows a conv or dense
    layer in a ``Sequential`` folded into that layer's weights and bias (the BatchNorm becomes an
    identity). Only for eval mode: the folding uses the running statistics. Outputs equal the
    unfolded model's to float32 rounding; the study CNN's inference on one CPU thread is about
    1.3-2x faster (benchmarks/bench_predict.py). A BatchNorm without running statistics stays.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    if model.training:
        raise ValueError("fold_batch_norm needs a model in eval mode (it folds the running statistics)")
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            layer, norm = module[i], module[i + 1]
            if getattr(norm, "running_mean", None) is None:
                continue
            if isinstance(layer, nn.Conv2d) and type(norm) is nn.BatchNorm2d:
                module[i] = fuse_conv_bn_eval(layer, norm)
            elif isinstance(layer, nn.Linear) and type(norm) is nn.BatchNorm1d:
                module[i] = fuse_linear_bn_eval(layer, norm)
            else:
                continue
            module[i + 1] = nn.Identity()
    return model


def model_from_payload(payload: dict) -> StampClassifier:
    """The network of a model file's payload, with its weights."""
    model = StampClassifier(payload["head_kind"], backbone=payload.get("backbone", "study_cnn"))
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise RbdaError(f"the model file's weights do not fit the study's network ({exc})") from None
    return model
