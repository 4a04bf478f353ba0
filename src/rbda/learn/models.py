"""Networks of the study (docs/method.md section 4).

* the feature extractors (backbones) live one module each in :mod:`rbda.learn.backbones`;
  :func:`make_backbone` builds one by its registered name (:data:`rbda.registry.BACKBONES`).
* :class:`LinearHead` -- the baseline classifier, linear feature -> 2.
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
import logging
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from rbda.atomic import atomic_path
from rbda.errors import InputFileError, RbdaError
from rbda.learn.reversal import GradientReversal
from rbda.registry import BACKBONES, backbone_class
from rbda.study import TRAINING_DEFAULTS

log = logging.getLogger("rbda.learn.models")

N_CLASSES = 2
MME_TEMPERATURE = 0.05
HEAD_KINDS = ("linear", "prototype")


def make_backbone(name: str) -> nn.Module:
    """A fresh backbone called ``name`` (a backbone module of :mod:`rbda.learn.backbones`; rbda.registry)."""
    return backbone_class(name)()


class LinearHead(nn.Module):
    """The baseline classifier: linear feature_dim -> 2 (logits)."""

    def __init__(self, feature_dim: int, n_classes: int = N_CLASSES):
        super().__init__()
        self.linear = nn.Linear(feature_dim, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class PrototypeHead(nn.Module):
    """Cosine-similarity classifier of MME: ``W @ normalize(f) / T`` (no bias)."""

    def __init__(
        self,
        feature_dim: int,
        n_classes: int = N_CLASSES,
        temperature: float = MME_TEMPERATURE,
    ):
        super().__init__()
        self.prototypes = nn.Linear(feature_dim, n_classes, bias=False)
        self.temperature = temperature

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.prototypes(F.normalize(features, dim=1)) / self.temperature


def make_head(kind: str, feature_dim: int, n_classes: int = N_CLASSES) -> nn.Module:
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
#: preprocessing_settings, preprocessing_sha256 (of the settings), weights_sha256, state_dict.
#: Type each fact must have when present (None is always allowed).
FACT_TYPES = {"method": str, "source": str, "target": str, "split": int, "shots": int, "seed": int,
              "lambda": (int, float)}


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
    from rbda.ingest.preprocess import PREPROCESSING, PREPROCESSING_SHA256, PREPROCESSING_VERSION

    state = {k: v.detach().cpu() for k, v in model.classifier_state().items()}
    # plain JSON values only (a weights-only load accepts nothing else; torch's version is an object)
    plain = lambda value: json.loads(json.dumps(value, default=str))  # noqa: E731
    payload = {"format": MODEL_FORMAT, "head_kind": model.head_kind, "backbone": model.backbone_name, "facts": plain(dict(facts)),
               "training": plain(dict(training or {})), "preprocessing": PREPROCESSING_VERSION,
               "preprocessing_settings": dict(PREPROCESSING), "preprocessing_sha256": PREPROCESSING_SHA256,
               "weights_sha256": weights_hash(state),
               "state_dict": state}
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save(payload, tmp)


def _check_weights(path: Path, state_dict: dict) -> None:
    """Every weight a tensor named by a string, every floating one finite (checked before any use)."""
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise InputFileError(path, f"weights that are tensors named by strings, got {type(tensor).__name__} "
                                       f"for {name!r}", where="state_dict")
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise InputFileError(path, f"finite weights, but {name!r} holds NaN or infinite values", where="state_dict")


def _check_facts(path: Path, payload: dict) -> None:
    for key in ("facts", "training"):
        if not isinstance(payload.setdefault(key, {}), dict):
            raise InputFileError(path, f"{key} as a mapping, got {type(payload[key]).__name__}", where=key)
    for key, kind in FACT_TYPES.items():
        value = payload["facts"].get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or (
                isinstance(value, float) and not math.isfinite(value)):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise InputFileError(path, f"facts.{key} a finite {names} or null, got {type(value).__name__} "
                                       f"{str(value)[:40]!r}", where=f"facts.{key}")
    versions = payload["training"].get("versions", {})
    if not isinstance(versions, dict):
        raise InputFileError(path, f"training.versions as a mapping, got {type(versions).__name__}",
                             where="training.versions")


def load_model_file(path: str | Path, expect_head: str | None = None, expect_backbone: str | None = None) -> dict:
    """Read a file written by :func:`save_model_file`; returns its payload.

    Errors name the file and say what was expected: a missing file, another
    kind of file, weights that are not tensors or not finite, weights without
    their recorded hash or that do not match it, facts of the wrong type, a
    model trained with other preprocessing settings than this rbda's (checked on
    the settings' hash, not only the version number), or (with ``expect_head``)
    a model of another head kind, or (with ``expect_backbone``) a model of
    another backbone (``training.model``). Every check runs on load, before any
    scoring.
    """
    from rbda.ingest.preprocess import PREPROCESSING_SHA256, PREPROCESSING_VERSION, preprocessing_sha256

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
    _check_weights(path, payload["state_dict"])
    _check_facts(path, payload)
    version = payload.get("preprocessing")
    settings = payload.get("preprocessing_settings")
    recorded_settings = preprocessing_sha256(settings) if isinstance(settings, dict) else None
    if version != PREPROCESSING_VERSION or recorded_settings != PREPROCESSING_SHA256:
        got = ("no preprocessing settings" if recorded_settings is None else
               f"preprocessing version {version!r}" if version != PREPROCESSING_VERSION else
               f"preprocessing version {version!r} with other settings (sha256 {recorded_settings[:12]}..., "
               f"this rbda's {PREPROCESSING_SHA256[:12]}...)")
        raise InputFileError(
            path, f"a model trained on stamps of preprocessing version {PREPROCESSING_VERSION} (this rbda's), "
                  f"but it was trained with {got}: its scores on stamps "
                  f"preprocessed now would be meaningless; retrain it with this rbda", where="preprocessing")
    recorded = payload.get("weights_sha256")
    payload["weights_sha256"] = actual = weights_hash(payload["state_dict"])
    if not isinstance(recorded, str):
        raise InputFileError(path, "its weights' SHA-256 (weights_sha256), which every model file written by "
                                   "`rbda train --model` records; without it an altered file cannot be told",
                             where="weights_sha256")
    if recorded != actual:
        raise InputFileError(path, f"weights matching their recorded SHA-256 {recorded[:12]}..., got "
                                   f"{actual[:12]}... (the file was altered)", where="weights_sha256")
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


#: Stamps of the probe batch on which the oneDNN forward pass must give the model's logits (:func:`scoring_forward`).
PROBE_STAMPS = 4
#: Largest difference accepted there between the two, relative to the largest logit (at least 1); float32
#: rounding gives about 1e-7.
PROBE_TOLERANCE = 1e-4


def scoring_forward(model: StampClassifier, device: torch.device, memory_format: str, input_size: int,
                    input_bound: float = math.inf):
    """``(forward, engine)``: the forward pass that scores batches of ``model`` (in eval mode, BatchNorm
    folded: :func:`fold_batch_norm`; on ``device``; put in ``memory_format`` here, in place), run by the
    caller under :func:`torch.inference_mode` on standard (contiguous) float32 batches of 3 x
    ``input_size`` x ``input_size`` stamps, and the name of the engine chosen.

    On a CPU with oneDNN enabled, the same modules and weights run on oneDNN tensors
    (``Tensor.to_mkldnn``): the backbone's activations stay in oneDNN's blocked layout from layer to
    layer, its convolutions and pooling run as oneDNN's blocked kernels, and the features come back as
    a standard tensor for the head: ``onednn``, 1.10-1.16x the channels-last model's inference speed
    for the study CNN on one thread (benchmarks/bench_predict.py). It is chosen only when it gives the
    model's logits on a probe batch (:data:`PROBE_STAMPS` seeded random stamps) to within
    :data:`PROBE_TOLERANCE`; a backbone with an operation oneDNN tensors lack (the padding of the
    Deep-HiTS backbones, EarlySN's layers) gets the model itself in ``memory_format``, as other devices do.

    oneDNN's ReLU and max pooling turn a NaN into a number where the standard kernels pass it on, so a
    NaN made inside the backbone (only an overflow makes one from finite stamps and weights) would
    give a finite score instead of a refused row. So the oneDNN pass takes only batches whose values
    are within ``input_bound`` (what preprocessing can produce:
    :data:`rbda.ingest.preprocess.NORMALISED_ABS_BOUND`); any other batch goes through the model
    itself. Within it, the study CNN's backbone cannot overflow float32 unless its weights reach about
    1e6 (trained ones are near 1)."""
    channels_last = memory_format == "channels_last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def plain(batch: torch.Tensor) -> torch.Tensor:
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return model(batch)

    def onednn(batch: torch.Tensor) -> torch.Tensor:
        return model.head(model.backbone(batch.to_mkldnn()).to_dense())

    def bounded(batch: torch.Tensor) -> torch.Tensor:
        inside = len(batch) == 0 or float(batch.abs().max()) <= input_bound  # (False for a NaN)
        return onednn(batch) if inside else plain(batch)

    if device.type != "cpu" or not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return plain, memory_format
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(PROBE_STAMPS, 3, input_size, input_size, generator=generator).clamp_(-input_bound, input_bound)
    with torch.inference_mode():
        expected = plain(probe)  # (a model that fails here fails the same way when scoring: not caught)
        try:
            difference = float((onednn(probe) - expected).abs().max()) / max(1.0, float(expected.abs().max()))
        except Exception as exc:  # noqa: BLE001 - an operation oneDNN tensors lack, whatever a backbone raises for it
            log.debug("the oneDNN forward pass fails on the probe batch (%s: %s); using the model itself",
                      type(exc).__name__, exc)
            return plain, memory_format
    if not difference <= PROBE_TOLERANCE:
        log.debug("the oneDNN forward pass differs from the model's by %.3g on the probe batch; using the model "
                  "itself", difference)
        return plain, memory_format
    return bounded, "onednn"


def model_from_payload(payload: dict) -> StampClassifier:
    """The network of a model file's payload, with its weights."""
    model = StampClassifier(payload["head_kind"], backbone=payload.get("backbone", "study_cnn"))
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise RbdaError(f"the model file's weights do not fit the study's network ({exc})") from None
    return model
