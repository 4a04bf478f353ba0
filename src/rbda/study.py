"""The study's vocabulary and defaults, in one place (standard library only).

Everything that names a part of the study (surveys, methods, pairs, lambdas,
the run-file schema) or fixes a default of training lives here, so that the
Snakefile (``rules/common.smk``), the command line and the learning core agree
by construction. This module imports neither torch nor numpy: the workflow
imports it when it plans jobs and the CLI when it parses arguments.

* :data:`SURVEYS`, :data:`METHODS`: the names used in paths, JSON and options.
* :func:`pair_name`, :func:`parse_pair_name`, :func:`study_pairs`,
  :func:`format_lambda`: how pairs and lambdas are written and checked.
* :class:`TrainingOptions`: every training option with its default, bounds and
  help. ``rbda train``'s argparse options are generated from it, the
  training loop takes its defaults from it, and a test checks the config
  schema's defaults and bounds against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from itertools import permutations
from typing import Any, Iterable

from rbda.errors import ConfigKeyError, SettingError

# --- names ------------------------------------------------------------------------------

#: Channels of a stamp, in the stored order.
CHANNELS = ("template", "science", "difference")
#: Side of a preprocessed stamp (the central crop; docs/method.md section 2).
STAMP_SIZE = 21

#: The surveys of the study, in study order (lower case, also in paths).
SURVEYS = ("hits", "des", "ztf", "atlas")
#: Display names of the surveys.
SURVEY_LABELS = {"hits": "HiTS", "des": "DES", "ztf": "ZTF", "atlas": "ATLAS"}

#: The method that trains a model from scratch on one survey.
BASELINE = "baseline"
#: Methods that adapt a (source, split) baseline to a target survey.
ADAPTATION_METHODS = ("finetune", "mme", "st", "ent", "dann", "mmefm", "cdac")
#: The published study's adaptation methods (the config's default ``methods``).
STUDY_METHODS = ("finetune", "mme")
#: Adaptation methods that are run once per lambda of the grid, then selected.
LAMBDA_METHODS = ("mme", "ent", "mmefm", "cdac")
#: Suffix of a lambda method's selected runs (``mme-selected``; ``rbda select-lambda``).
SELECTED_SUFFIX = "-selected"
#: What the workflow can keep model files of (config ``save_models``; baselines' are always kept):
#: every run of an adaptation method, or the selected runs of a lambda method.
SAVE_MODEL_CHOICES = (*ADAPTATION_METHODS, *(f"{m}{SELECTED_SUFFIX}" for m in LAMBDA_METHODS))
#: The workflow's default ``save_models``: the selected MME runs.
DEFAULT_SAVE_MODELS = ("mme-selected",)
#: Every training method, as ``rbda train --method`` names it.
METHODS = (BASELINE, *ADAPTATION_METHODS)
#: Display names of the methods.
METHOD_LABELS = {"baseline": "Baseline", "finetune": "FT", "mme": "MME", "st": "S+T", "ent": "ENT",
                 "dann": "DANN", "mmefm": "MME+FM", "cdac": "CDAC"}

#: Schema id of a run result (one JSON per training run; docs/architecture.md).
RUN_SCHEMA = "rbda.run/1"
#: Rules that choose MME's lambda (``rbda select-lambda --rule``; docs/method.md section 7).
SELECTION_RULES = ("per_pair", "per_split", "first_split")
#: The default rule: one lambda per (source, target) pair (docs/method.md section 7).
DEFAULT_SELECTION_RULE = "per_pair"
#: The rules that choose one lambda per pair, once (``rbda choose-lambda``); per_split chooses per group.
PAIR_SELECTION_RULES = ("per_pair", "first_split")
#: Schema id of a pair's lambda choice (``rbda choose-lambda``; docs/architecture.md).
LAMBDA_CHOICE_SCHEMA = "rbda.lambda-choice/1"

#: Which of several epochs with the same best validation BACC keeps its weights (``--best-epoch-ties``).
BEST_EPOCH_TIES = ("latest", "earliest")

#: Feature extractors a model can have (``training.model``; ``rbda train --backbone``):
#: the study's CNN, the ALeRCE "DeepHiTS layer" with cyclic pooling, EarlySN's rotation-averaged
#: conv maps (RELATED.md B.3, A.3), and the DeepHiTS stack on the unrotated stamp without cyclic
#: pooling (the rotation-invariance ablation; rbda.learn.models.BACKBONE_CLASSES).
BACKBONES = ("study_cnn", "deephits", "earlysn", "deephits_unrotated")

#: What a model learns (``training.task``; ``rbda train --task``): real/bogus (the study's) or the
#: survey's original classes (RELATED.md E.2; rbda.ingest.multiclass).
TASKS = ("binary", "multiclass")
#: The original classes of the surveys that have more than real/bogus, in label order (index = label
#: of ``task: multiclass``): ALeRCE's order for ZTF (0 AGN .. 4 bogus), alphabetical for ATLAS.
SURVEY_CLASSES = {"ztf": ("AGN", "SN", "VS", "asteroid", "bogus"),
                  "atlas": ("burn", "cr", "kast", "noise", "spike", "streak")}
#: Balanced parts of a multiclass split, items per class (TwoAlert: 200 validation, 100 test).
MULTICLASS_VAL_PER_CLASS = 200
MULTICLASS_TEST_PER_CLASS = 100

#: How the strong view of mmefm and cdac shifts a stamp (``training.strong_view_shift``;
#: rbda.learn.augment.strong_view): by whole pixels (values kept) or bilinear sub-pixel (values smeared).
STRONG_VIEW_SHIFTS = ("integer", "subpixel")

#: Learning-rate schedules (``training.lr_schedule``; rbda.learn.train.learning_rate_at): halved every
#: ``lr_halve_every`` iterations (the study's) or the reference MME code's inverse decay.
LR_SCHEDULES = ("halve", "inv")

#: Where training runs (``--device``); ``auto`` is CUDA when available.
DEVICES = ("auto", "cpu", "cuda")
#: Tensor memory layouts (``--memory-format``); ``auto`` is channels-last on CPU, contiguous on CUDA.
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


# --- pairs and lambdas ------------------------------------------------------------------


def pair_name(source: str, target: str) -> str:
    """``des-to-hits``."""
    return f"{source}-to-{target}"


def parse_pair_name(name: str) -> tuple[str, str]:
    """``des-to-hits`` -> ``("des", "hits")``; ``ValueError`` if not of that form."""
    parts = str(name).split("-to-")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"expected a pair written source-to-target, got {name!r}")
    return parts[0], parts[1]


def ordered_pairs(surveys: Iterable[str]) -> list[tuple[str, str]]:
    """All ordered (source, target) pairs of distinct surveys, by source then target."""
    return list(permutations(list(surveys), 2))


def study_pairs(surveys: list[str], pairs: Iterable[str | tuple[str, str]] | None = None,
                setting: str = "pairs") -> list[tuple[str, str]]:
    """The study's (source, target) pairs: ``pairs`` (names ``source-to-target`` or tuples)
    checked against ``surveys``, or every ordered pair of distinct surveys when ``None``.

    Errors (:class:`~rbda.errors.ConfigKeyError`) name the config key (``setting``) and the offending entry.
    """
    surveys = list(surveys)
    if len(surveys) < 2 or len(set(surveys)) != len(surveys):
        raise ConfigKeyError("surveys", f"config key 'surveys': at least two distinct survey names expected, got {surveys!r}")
    if pairs is None:
        return ordered_pairs(surveys)
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
        raise ConfigKeyError(setting, f"config key {setting!r}: null or a list of source-to-target names expected, got {pairs!r}")
    checked: list[tuple[str, str]] = []
    for i, pair in enumerate(pairs):
        key = f"config key '{setting}[{i}]' ({pair!r})"
        try:
            source, target = parse_pair_name(pair) if isinstance(pair, str) else tuple(pair)
        except (TypeError, ValueError):
            raise ConfigKeyError(setting, f"{key}: expected a pair written source-to-target of two different surveys") from None
        if source == target:
            raise ConfigKeyError(setting, f"{key}: source and target are the same survey; a pair needs two different surveys")
        for role, name in (("source", source), ("target", target)):
            if name not in surveys:
                raise ConfigKeyError(setting, f"{key}: {role} {name!r} is not a configured survey; expected pairs of two distinct surveys among "
                                f"{', '.join(surveys)}")
        checked.append((source, target))
    if not checked or len(set(checked)) != len(checked):
        raise ConfigKeyError(setting, f"config key {setting!r}: a non-empty list of distinct pairs expected")
    return checked


def format_lambda(value: float) -> str:
    """A lambda as it appears in paths and JSON: ``format(x, "g")`` (0.01, 0.5, 10)."""
    return format(float(value), "g")


# --- training options -------------------------------------------------------------------


def option(default: Any, help: str, *, gt: float | None = None, ge: float | None = None,
           lt: float | None = None, le: float | None = None, choices: tuple | None = None,
           affects_results: bool = True, in_config: bool = True, flag: str | None = None) -> Any:
    """A field of :class:`TrainingOptions`: its default, bounds and help text.

    ``affects_results``: the option changes the numbers a run produces (it is
    part of what a resumed checkpoint must match). ``in_config``: the option
    is a key of the config's ``training:`` section. ``flag``: the ``rbda train``
    option's name when it is not the field's (see :func:`option_flag`).
    """
    meta = {"help": help, "gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices,
            "affects_results": affects_results, "in_config": in_config, "flag": flag}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainingOptions:
    """Every training option, its default (the study's value) and its bounds."""

    lr: float = option(0.01, "SGD learning rate", gt=0)
    momentum: float = option(0.9, "SGD momentum", ge=0, lt=1)
    batch_size: int = option(50, "labelled items per batch (MME: half source, half target)", ge=2)
    lr_halve_every: int = option(100_000, "iterations between halvings of the learning rate", ge=1)
    epoch_size: int = option(10_000, "labelled items per epoch", ge=1)
    patience: int = option(100, "epochs without validation gain before stopping", ge=1)
    max_epochs: int = option(1000, "most epochs a run trains", ge=1)
    val_shots: int = option(10, "target validation items per class (adaptation methods)", ge=1)
    best_epoch_ties: str = option("latest", "which of several epochs with the best validation BACC is kept: "
                                  "latest (the reference MME code) or earliest; patience counts epochs "
                                  "without a strictly better BACC either way", choices=BEST_EPOCH_TIES)
    epoch_zero_candidate: bool = option(False, "FT/MME: the starting model, evaluated on the validation "
                                        "items before training, is a candidate for the best epoch (epoch 0)")
    # `rbda train --model` names the model file to write, so this option's flag is --backbone
    model: str = option("study_cnn", "feature extractor: study_cnn (the study's), deephits (ALeRCE's "
                        "rotation-invariant DeepHiTS layer), earlysn (rotations averaged on conv maps) or "
                        "deephits_unrotated (the DeepHiTS stack without rotations: the ablation)",
                        choices=BACKBONES, flag="backbone")
    beta: float = option(0.0, "confidence penalty: the classification loss is CE - beta * H(softmax) "
                         "(EarlySN: 0.5; 0 = plain cross-entropy, the study's)", ge=0)
    task: str = option("binary", "binary (real/bogus, the study's) or multiclass (the survey's original "
                       "classes, rbda.study.SURVEY_CLASSES; baseline only, on a `rbda split --task multiclass` "
                       "split)", choices=TASKS)
    # the optimiser (rbda.learn.optim.MomentumSGD); the study's is plain SGD halving its rate, the reference
    # MME code (SSDA_MME main.py) uses lr_schedule inv, backbone_lr_scale 0.1, backbone_dense_lr_scale 1,
    # weight_decay 0.0005, nesterov (docs/method.md, "What every method shares and where each differs")
    lr_schedule: str = option("halve", "halve (the rate halved every lr_halve_every iterations, the study's) "
                              "or inv (lr * (1 + 0.0001 i)^-0.75 at iteration i, the reference MME code's)",
                              choices=LR_SCHEDULES)
    backbone_lr_scale: float = option(1.0, "learning-rate multiplier of the feature extractor's convolutional "
                                      "part (reference MME code: 0.1; the study's: 1)", gt=0)
    backbone_dense_lr_scale: float = option(1.0, "learning-rate multiplier of the feature extractor's dense "
                                            "layers (reference MME code: 1 = 10 x its 0.1; the study's: 1)", gt=0)
    head_lr_scale: float = option(1.0, "learning-rate multiplier of every other weight: the head "
                                  "(and DANN's domain classifier); 1 in the study and the reference MME code", gt=0)
    weight_decay: float = option(0.0, "L2 weight decay of SGD (reference MME code: 0.0005; the study's: 0)", ge=0)
    nesterov: bool = option(False, "Nesterov momentum (reference MME code: on; the study's: off); "
                            "needs momentum > 0")
    # mmefm (rbda.learn.methods.mme_fixmatch): FixMatch-style pseudo-labels on MME (docs/method.md section 5)
    pseudo_label_threshold: float = option(0.95, "mmefm, cdac: tau, the least softmax probability of the weak view's "
                                           "class for it to become the strong view's target", ge=0, le=1)
    consistency_weight: float = option(0.3, "mmefm: mu, the weight of the pseudo-label consistency loss", ge=0)
    strong_view_shift: str = option("integer", "mmefm, cdac: how the strong view shifts a stamp: integer (whole "
                                    "pixels, every value kept) or subpixel (bilinear; smears 1-pixel "
                                    "artefacts)", choices=STRONG_VIEW_SHIFTS)
    # finetune (rbda.learn.methods.finetune): BatchNorm statistics re-estimated (the study's) or frozen
    frozen_batch_norm: bool = option(False, "finetune: BatchNorm layers in eval mode while fine-tuning (the "
                                     "baseline's running statistics kept, not re-estimated from batches of "
                                     "target shots); the study's FT re-estimates them")
    # dann (rbda.learn.methods.dann): the reversal coefficient's warm start (TLlib's max_iters; docs/method.md)
    reversal_ramp_iterations: int = option(1000, "dann: N, the iterations over which the gradient-reversal "
                                           "coefficient 2/(1+exp(-i/N))-1 ramps up (reference: 1000)", ge=1)
    device: str = option("auto", "auto (CUDA when available), cpu or cuda", choices=DEVICES,
                         affects_results=False)
    threads: int | None = option(None, "torch CPU threads (default: torch's)", ge=1, affects_results=False,
                                 in_config=False)
    deterministic: bool = option(False, "deterministic algorithms (reproducible to the bit)",
                                 affects_results=False)
    log_every_epochs: int = option(10, "progress line period when not a terminal", ge=1,
                                   affects_results=False)
    checkpoint_every_epochs: int = option(1, "epochs between resumable checkpoints", ge=1,
                                          affects_results=False, in_config=False)
    memory_format: str = option("auto", "tensor layout, float32 either way; auto: channels_last on CPU "
                                "(about 1.6x faster here), contiguous on CUDA", choices=MEMORY_FORMATS)
    bf16: bool = option(False, "bfloat16 autocast (faster; not the study's float32)")

    def __post_init__(self) -> None:
        for f in fields(self):
            check_option(f.name, getattr(self, f.name))


def training_option_fields() -> tuple:
    """The :class:`TrainingOptions` fields, with their metadata."""
    return fields(TrainingOptions)


def option_flag(f) -> str:
    """The ``rbda train`` option of a :class:`TrainingOptions` field: ``--batch-size``, ``--backbone``."""
    return "--" + (f.metadata["flag"] or f.name).replace("_", "-")


def option_dest(f) -> str:
    """The argparse attribute holding a :class:`TrainingOptions` field's value (``args.backbone``)."""
    return (f.metadata["flag"] or f.name).replace("-", "_")


def _field(name: str):
    for f in fields(TrainingOptions):
        if f.name == name:
            return f
    raise KeyError(name)


def check_option(name: str, value: Any) -> None:
    """Raise :class:`SettingError` naming ``name`` unless ``value`` is within its bounds."""
    f = _field(name)
    meta = f.metadata
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            raise SettingError(name, " or ".join(meta["choices"]), value)
        return
    if f.default is False or f.default is True:
        if not isinstance(value, bool):
            raise SettingError(name, "true or false", value)
        return
    if value is None and f.default is None:
        return
    integer = isinstance(f.default, int) or f.default is None
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise SettingError(name, f"an integer {describe_bounds(name)}".rstrip(), value)
    if not integer and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise SettingError(name, f"a finite number {describe_bounds(name)}".rstrip(), value)
    ok = ((meta["gt"] is None or value > meta["gt"]) and (meta["ge"] is None or value >= meta["ge"])
          and (meta["lt"] is None or value < meta["lt"]) and (meta["le"] is None or value <= meta["le"]))
    if not ok:
        raise SettingError(name, f"a value {describe_bounds(name)}", value)


def describe_bounds(name: str) -> str:
    """``> 0``, ``in [0, 1)``, ``>= 1``: the bounds of option ``name`` in words."""
    meta = _field(name).metadata
    low = (f"[{meta['ge']}" if meta["ge"] is not None else f"({meta['gt']}" if meta["gt"] is not None else None)
    high = (f"{meta['le']}]" if meta["le"] is not None else f"{meta['lt']})" if meta["lt"] is not None else None)
    if low and high:
        return f"in {low}, {high}"
    if low:
        return (">= " if low[0] == "[" else "> ") + low[1:]
    if high:
        return ("<= " if high[-1] == "]" else "< ") + high[:-1]
    return ""


#: The study's training settings (the defaults of every training option).
TRAINING_DEFAULTS = TrainingOptions()
