"""What every training method provides.

A method is a small class: it names the rows it trains, validates and is
evaluated on, builds its model (possibly from a baseline), plans one epoch of
batch indices in a single vectorised draw, and yields the loss of each
optimiser update of an iteration. The loop in :mod:`rbda.learn.train` does the rest
(optimiser, learning-rate schedule, validation, early stopping, checkpoints).

Batches are index gathers from stamp tensors held in memory
(:class:`rbda.learn.data.SurveyTensors`, on the GPU when training there).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Iterator

import numpy as np
import torch

from rbda.learn.data import BalancedSampler, SurveyTensors, UniformSampler
from rbda.errors import RbdaError, SettingError
from rbda.learn.models import StampClassifier
from rbda.ingest.splits import labelled_shots, unlabelled_rest, validation_shots
from rbda.learn.losses import classification_loss
from rbda.registry import REGISTRY
from rbda.study import TRAINING_DEFAULTS, check_option


@dataclass(frozen=True)
class RunSpec:
    """What a run is: the method, its data selection and its method settings."""

    method: str
    source: str
    target: str | None
    split: int
    seed: int
    shots: int | None = None
    lam: float | None = None
    val_shots: int = TRAINING_DEFAULTS.val_shots
    batch_size: int = TRAINING_DEFAULTS.batch_size
    model: str = TRAINING_DEFAULTS.model  # the backbone (rbda.registry.BACKBONES)
    beta: float = TRAINING_DEFAULTS.beta  # confidence penalty of the classification loss (rbda.learn.losses)
    from_scratch: bool = False  # st only: start from a fresh network instead of the baseline
    task: str = TRAINING_DEFAULTS.task  # binary | multiclass (rbda.study.TASKS; rbda.ingest.multiclass)
    #: the method's own settings (its declaration's, rbda.registry.Setting): name -> value; the
    #: declared defaults fill in what is not given
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        declaration = REGISTRY.methods.get(self.method)  # an unknown method fails in check_spec
        if declaration is not None:
            object.__setattr__(self, "settings", {**{s.name: s.default for s in declaration.settings},
                                                  **self.settings})

    def as_dict(self) -> dict:
        d = {"method": self.method, "source": self.source, "target": self.target,
             "split": self.split, "seed": self.seed, "shots": self.shots,
             "lambda": self.lam, "val_shots": self.val_shots, "batch_size": self.batch_size,
             "model": self.model, "beta": self.beta}
        if self.from_scratch:  # only when set: checkpoints of the other methods keep their fingerprint
            d["from_scratch"] = True
        if self.task != TRAINING_DEFAULTS.task:  # likewise: binary runs keep their fingerprint
            d["task"] = self.task
        d.update(self.settings)  # a method without settings keeps its fingerprint
        return d


@dataclass
class Evaluation:
    """A test part to evaluate on at the end, and the survey's role in the run."""

    survey: SurveyTensors
    role: str  # source | target | other
    part: str = "test"


class TrainingMethod(ABC):
    """The interface the training loop drives (see the module docstring)."""

    name: ClassVar[str]
    head_kind: ClassVar[str] = "linear"
    needs_init_model: ClassVar[bool] = False
    needs_target: ClassVar[bool] = False
    supports_multiclass: ClassVar[bool] = False  # trains on the source's original classes (task: multiclass)

    def __init__(self, spec: RunSpec, surveys: dict[str, SurveyTensors]):
        self.spec = spec
        self.surveys = surveys
        self.check_spec(spec)
        self.source = self._survey(spec.source, "source")
        self.target = self._survey(spec.target, "target") if self.needs_target else None

    # -- set-up ---------------------------------------------------------------
    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        """Reject settings that do not apply to this method (before any data is loaded)."""
        for name in ("batch_size", "val_shots", "model", "beta", "task"):
            check_option(name, getattr(spec, name))
        declared = REGISTRY.methods[cls.name].settings
        unknown = sorted(set(spec.settings) - {s.name for s in declared})
        if unknown:
            raise SettingError(unknown[0], f"a setting of method {cls.name!r} "
                               f"({', '.join(s.name for s in declared) or 'it has none'})", spec.settings[unknown[0]])
        for s in declared:
            s.check(spec.settings[s.name], s.name)
        if spec.task == "multiclass" and not cls.supports_multiclass:
            raise SettingError("task", f"binary for method {cls.name!r} (multiclass: baseline only)", spec.task)
        if spec.from_scratch and cls.name != "st":
            raise SettingError("from_scratch", "false for method " + repr(cls.name) + " (only 'st' can start from scratch)", True)
        if cls.needs_target:
            if spec.target is None:
                raise SettingError("target", f"a target survey for method {cls.name!r}")
            if spec.target == spec.source:
                raise SettingError("target", "a survey other than the source", spec.target)
            if spec.shots is None or spec.shots < 1:
                raise SettingError("shots", f"a positive number of labelled target items per class for {cls.name!r}", spec.shots)
            if spec.val_shots < 1:
                raise SettingError("val_shots", "a positive number of validation items per class", spec.val_shots)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The source's original classes in label order for ``task: multiclass``; None for binary."""
        if self.spec.task != "multiclass":
            return None
        from rbda.ingest.multiclass import survey_classes

        return survey_classes(self.spec.source)

    @property
    def n_classes(self) -> int:
        """Outputs of the model: 2 (real/bogus) or the source's class count."""
        return 2 if self.class_names is None else len(self.class_names)

    def _survey(self, name: str, role: str) -> SurveyTensors:
        if name not in self.surveys:
            raise SettingError(
                "data", f"data for the {role} survey {name!r} (given: {', '.join(sorted(self.surveys)) or 'none'})"
            )
        return self.surveys[name]

    def build_model(self, init_state: dict | None) -> StampClassifier:
        """A fresh model of this method's head kind and the run's backbone, loaded from ``init_state`` if needed."""
        if self.needs_init_model and init_state is None:
            raise SettingError("init_model", f"a baseline model to start {self.name!r} from")
        model = StampClassifier(self.head_kind, backbone=self.spec.model, n_classes=self.n_classes)
        if init_state is not None:
            try:
                self.load_init_state(model, init_state)
            except RuntimeError as exc:  # load_state_dict: missing, unexpected or mis-shaped weights
                raise RbdaError(f"the initial model's weights do not fit the study's network ({exc})") from None
        return model

    def load_init_state(self, model: StampClassifier, state: dict) -> None:
        model.load_state_dict(state)

    # -- what the loop asks for -----------------------------------------------
    @abstractmethod
    def validation(self) -> tuple[SurveyTensors, np.ndarray]:
        """The survey and rows whose balanced accuracy selects the best epoch."""

    @abstractmethod
    def evaluations(self) -> list[Evaluation]:
        """The test parts evaluated once training ends."""

    def begin_epoch(self, iteration: int) -> None:  # noqa: B027 (an optional hook: most methods need no schedule)
        """Called by the loop before each epoch with the iteration it starts at (for schedules such
        as DANN's reversal ramp, which count iterations of the run)."""

    def train_mode(self, model: StampClassifier) -> None:
        """Put ``model`` in training mode for an epoch (the loop calls it before the epoch's updates)."""
        model.train()

    @abstractmethod
    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """All batch rows of one epoch, each tensor shaped (iterations, batch)."""

    @abstractmethod
    def losses(self, model: StampClassifier, plan: dict[str, torch.Tensor], i: int) -> Iterator[torch.Tensor]:
        """The loss of each optimiser update of iteration ``i``, in order."""

    def describe(self) -> dict:
        """Facts about the data the method uses (counts), for the run JSON."""
        return {}


class TargetAdaptation(TrainingMethod):
    """A method that adapts the (source, split) baseline to a target survey.

    Shared by fine-tuning and MME: ``shots`` labelled target items per class
    from the target's train part (nested across shot counts), validation on
    ``val_shots`` labelled items per class from the target's validation part,
    evaluation on the source and target test parts.
    """

    needs_init_model = True
    needs_target = True

    def __init__(self, spec: RunSpec, surveys: dict[str, SurveyTensors]):
        super().__init__(spec, surveys)
        t = self.target
        self.shots = labelled_shots(t.split.train, t.labels_np, spec.shots, spec.seed, t.name, spec.split)
        self.val_rows = validation_shots(t.split.val, t.labels_np, spec.val_shots, spec.seed, t.name, spec.split)

    def validation(self) -> tuple[SurveyTensors, np.ndarray]:
        return self.target, self.val_rows

    def evaluations(self) -> list[Evaluation]:
        return [Evaluation(self.source, "source"), Evaluation(self.target, "target")]

    def describe(self) -> dict:
        return {"target_labelled": int(self.shots.size), "target_val": int(self.val_rows.size)}


class MixedBatchAdaptation(TargetAdaptation):
    """Adaptation on labelled batches half source, half target shots (S+T, MME, ENT, DANN).

    Each iteration draws ``batch_size - batch_size // 2`` source items
    (class-balanced from the source train part) and ``batch_size // 2``
    labelled target items (class-balanced from the shots); with
    ``uses_unlabelled`` also ``batch_size`` unlabelled target items (uniformly
    from the rest of the target train part).
    """

    uses_unlabelled: ClassVar[bool] = False

    @classmethod
    def check_spec(cls, spec: RunSpec) -> None:
        super().check_spec(spec)

    def __init__(self, spec: RunSpec, surveys: dict[str, SurveyTensors]):
        super().__init__(spec, surveys)
        self.n_target = spec.batch_size // 2
        self.n_source = spec.batch_size - self.n_target
        self.source_sampler = BalancedSampler(self.source, self.source.split.train, f"train part of {self.source.name!r}")
        self.target_sampler = BalancedSampler(self.target, self.shots, f"labelled shots of {self.target.name!r}")
        if self.uses_unlabelled:
            self.unlabelled = unlabelled_rest(self.target.split.train, self.shots)
            self.unlabelled_sampler = UniformSampler(
                self.target, self.unlabelled,
                f"unlabelled train part of {self.target.name!r} (all train items are labelled shots)")

    def plan_epoch(self, iterations: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        plan = {"source": self.source_sampler.draw((iterations, self.n_source), generator),
                "target": self.target_sampler.draw((iterations, self.n_target), generator)}
        if self.uses_unlabelled:
            plan["unlabelled"] = self.unlabelled_sampler.draw((iterations, self.spec.batch_size), generator)
        return plan

    def labelled_batch(self, plan: dict[str, torch.Tensor], i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Iteration ``i``'s labelled batch: its source items, then its target shots."""
        xs, ys = self.source.batch(plan["source"][i])
        xt, yt = self.target.batch(plan["target"][i])
        return torch.cat((xs, xt)), torch.cat((ys, yt))

    def unlabelled_batch(self, plan: dict[str, torch.Tensor], i: int) -> torch.Tensor:
        return self.target.batch(plan["unlabelled"][i])[0]

    def describe(self) -> dict:
        facts = super().describe()
        if self.uses_unlabelled:
            facts["target_unlabelled"] = int(self.unlabelled.size)
        return facts


def cross_entropy_on(model: StampClassifier, survey: SurveyTensors, rows: torch.Tensor,
                     beta: float = TRAINING_DEFAULTS.beta) -> torch.Tensor:
    """The classification loss on ``rows`` of ``survey``: cross-entropy minus ``beta`` times the
    predictions' entropy (:func:`rbda.learn.losses.classification_loss`; plain CE at ``beta = 0``)."""
    x, y = survey.batch(rows)
    return classification_loss(model(x), y, beta)
