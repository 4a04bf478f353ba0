"""The study's vocabulary and defaults, in one place (standard library only).

Everything that names a part of the study (surveys, methods, pairs, lambdas,
the run-file schema) or fixes a default of training lives here, so that the
Snakefile (``rules/config.smk``, ``rules/paths.smk``), the command line and the learning core agree
by construction. This module imports neither torch nor numpy: the workflow
imports it when it plans jobs and the CLI when it parses arguments.

* :data:`SURVEYS`: the names used in paths, JSON and options (methods and backbones:
  :mod:`rbda.registry`, from their own modules).
* :func:`pair_name`, :func:`parse_pair_name`, :func:`study_pairs`,
  :func:`format_lambda`: how pairs and lambdas are written and checked.
* :class:`TrainingOptions`: every training option with its default, bounds and
  help. ``rbda train``'s argparse options are generated from it, the
  training loop takes its defaults from it, and a test checks the config
  schema's defaults and bounds against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from itertools import permutations
from typing import Any, Iterable

from rbda.errors import ConfigKeyError
from rbda.registry import BACKBONES, REGISTRY, check_value
from rbda.registry import describe_bounds as bounds_in_words
from rbda.surveys import shipped_surveys

# --- names ------------------------------------------------------------------------------

#: Channels of a stamp, in the stored order.
CHANNELS = ("template", "science", "difference")
#: Side of a preprocessed stamp (the central crop; docs/method.md section 2).
STAMP_SIZE = 21

#: The surveys of the study, in study order (lower case, also in paths): the shipped survey
#: declarations (rbda/data/surveys.json, read by rbda.surveys; others are declared, not coded).
SURVEYS = tuple(shipped_surveys())
#: Display names of the study's surveys (rbda.surveys.survey_label for any declared one).
SURVEY_LABELS = {name: survey.label for name, survey in shipped_surveys().items()}

# The training methods and backbones (METHODS, ADAPTATION_METHODS, LAMBDA_METHODS, METHOD_LABELS,
# SAVE_MODEL_CHOICES, BACKBONES, ...) are declared by their own modules: rbda.registry.

#: The published study's adaptation methods (the config's default ``methods``).
STUDY_METHODS = ("finetune", "mme")
#: The workflow's default ``save_models``: the selected MME runs.
DEFAULT_SAVE_MODELS = ("mme-selected",)

#: Schema id of a run result (one JSON per training run; docs/architecture.md).
RUN_SCHEMA = "rbda.run/1"
#: Rules that choose MME's lambda (``rbda select-lambda --rule``; docs/method.md section 7).
SELECTION_RULES = ("per_pair", "per_split", "first_split")
#: The default rule: one lambda per (source, target) pair (docs/method.md section 7).
DEFAULT_SELECTION_RULE = "per_pair"
#: The rules that choose one lambda per pair, once (``rbda choose-lambda``); per_split chooses per group.
PAIR_SELECTION_RULES = ("per_pair", "first_split")
#: Schema id of a pair's lambda choice (``rbda choose-lambda``; docs/architecture.md).
LAMBDA_CHOICE_SCHEMA = "rbda.lambda-choice/2"

#: Which of several epochs with the same best validation BACC keeps its weights (``--best-epoch-ties``).
BEST_EPOCH_TIES = ("latest", "earliest")

#: What a model learns (``training.task``; ``rbda train --task``): real/bogus (the study's) or the
#: survey's original classes (RELATED.md E.2; rbda.ingest.multiclass).
TASKS = ("binary", "multiclass")
#: The original classes of the surveys that have more than real/bogus, in label order (index = label
#: of ``task: multiclass``), as their survey declarations list them (``classes``).
SURVEY_CLASSES = {name: survey.classes for name, survey in shipped_surveys().items() if survey.classes}
#: Balanced parts of a multiclass split, items per class (TwoAlert: 200 validation, 100 test).
MULTICLASS_VAL_PER_CLASS = 200
MULTICLASS_TEST_PER_CLASS = 100

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
    model: str = option("study_cnn", "feature extractor: " + "; ".join(
                        f"{b.name} ({b.help})" for b in REGISTRY.backbones.values()),
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
    """Raise :class:`~rbda.errors.SettingError` naming ``name`` unless ``value`` is within its bounds."""
    f = _field(name)
    meta = f.metadata
    check_value(name, value, f.default, meta["gt"], meta["ge"], meta["lt"], meta["le"], meta["choices"])


def describe_bounds(name: str) -> str:
    """``> 0``, ``in [0, 1)``, ``>= 1``: the bounds of option ``name`` in words."""
    meta = _field(name).metadata
    return bounds_in_words(meta["gt"], meta["ge"], meta["lt"], meta["le"])


#: The study's training settings (the defaults of every training option).
TRAINING_DEFAULTS = TrainingOptions()
