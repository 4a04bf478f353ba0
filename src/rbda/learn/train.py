"""The one training loop, shared by every method.

:func:`train` drives a :class:`~rbda.learn.methods.base.TrainingMethod`: SGD with
momentum (per-group learning-rate multipliers, weight decay and Nesterov as
options: :mod:`rbda.learn.optim`), the learning rate halved every ``lr_halve_every`` iterations
(or the reference MME code's ``inv`` decay, an option),
epochs of ``epoch_size`` labelled items (``ceil(epoch_size / batch_size)``
iterations), validation balanced accuracy after every epoch, early stopping
after ``patience`` epochs without improvement, the best weights kept
(docs/method.md section 5).

Batches are planned a whole epoch at a time (one vectorised draw of row
indices) and gathered from in-memory tensors; the loss is summed on the device
and read once per epoch (a NaN/inf loss stops the run with an error).
:func:`train_members` trains several runs that differ in lambda as members of one job: the
surveys loaded once, one batch stream, each member stepping on every batch (:func:`train` is a
job of one member). Resumable through :mod:`rbda.learn.checkpoint`; device and layout set-up in
:mod:`rbda.device`; the run JSON in :mod:`rbda.learn.records`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, TextIO

import torch

from rbda.learn.checkpoint import TrainingState, fingerprint, load_checkpoint, resume, save_checkpoint
from rbda.device import apply_memory_format, resolve_memory_format
from rbda.errors import RbdaError, SettingError
from rbda.learn.evaluate import evaluate_rows, multiclass_rows
from rbda.learn.methods.base import TrainingMethod
from rbda.learn.models import StampClassifier
from rbda.learn.optim import MomentumSGD, inv_decay, parameter_groups
from rbda.progress import Progress
from rbda.seeding import derive_seed
from rbda.study import TRAINING_DEFAULTS as DEFAULTS
from rbda.study import check_option, training_option_fields
from rbda.registry import ADAPTATION_METHODS


@dataclass(frozen=True)
class TrainConfig:
    """The loop's settings; defaults and bounds from :class:`rbda.study.TrainingOptions`."""

    lr: float = DEFAULTS.lr
    momentum: float = DEFAULTS.momentum
    lr_halve_every: int = DEFAULTS.lr_halve_every
    epoch_size: int = DEFAULTS.epoch_size
    patience: int = DEFAULTS.patience
    max_epochs: int = DEFAULTS.max_epochs
    best_epoch_ties: str = DEFAULTS.best_epoch_ties
    epoch_zero_candidate: bool = DEFAULTS.epoch_zero_candidate
    log_every_epochs: int = DEFAULTS.log_every_epochs
    checkpoint_every_epochs: int = DEFAULTS.checkpoint_every_epochs
    memory_format: str = DEFAULTS.memory_format  # see rbda.device.resolve_memory_format
    bf16: bool = DEFAULTS.bf16
    lr_schedule: str = DEFAULTS.lr_schedule
    backbone_lr_scale: float = DEFAULTS.backbone_lr_scale
    backbone_dense_lr_scale: float = DEFAULTS.backbone_dense_lr_scale
    head_lr_scale: float = DEFAULTS.head_lr_scale
    weight_decay: float = DEFAULTS.weight_decay
    nesterov: bool = DEFAULTS.nesterov

    def check(self) -> None:
        for f in fields(self):
            check_option(f.name, getattr(self, f.name))
        if self.nesterov and self.momentum == 0:
            raise SettingError("nesterov", "false when momentum is 0 (Nesterov momentum needs a momentum > 0)", True)

    def result_affecting(self) -> dict:
        """Settings that change the numbers a run produces (part of a checkpoint's fingerprint)."""
        affecting = {f.name for f in training_option_fields() if f.metadata["affects_results"]}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in affecting}


@dataclass
class TrainingResult:
    model: StampClassifier  # holding the best weights
    state: TrainingState
    stopped_by: str
    wall_seconds: float
    resumed_from_epoch: int | None
    device: str
    threads: int
    memory_format: str  # resolved: channels_last or contiguous


def learning_rate_at(config: TrainConfig, iteration: int) -> float:
    """The base learning rate at ``iteration``: halved every ``lr_halve_every`` iterations (``halve``,
    the study's) or the reference's ``inv`` decay (:func:`rbda.learn.optim.inv_decay`)."""
    if config.lr_schedule == "inv":
        return config.lr * inv_decay(iteration)
    return config.lr * 0.5 ** (iteration // config.lr_halve_every)


def _status(state: TrainingState, loss: float, bacc: float) -> str:
    return f"loss {loss:.4f} | val BACC {bacc:.4f} | best {state.best_bacc:.4f} @ epoch {state.best_epoch}"


def _validation_bacc(method: TrainingMethod, model, survey, rows) -> float:
    """The balanced accuracy that selects the best epoch: real/bogus, or over the K classes (task: multiclass)."""
    if getattr(method, "class_names", None) is not None:
        return multiclass_rows(model, survey, rows, method.class_names).balanced_accuracy
    return evaluate_rows(model, survey.stamps, survey.labels, rows).balanced_accuracy()


def _train_epoch(method: TrainingMethod, model, optimizer, plan: dict[str, torch.Tensor], config: TrainConfig,
                 state: TrainingState, autocast) -> float:
    """One epoch of updates on ``plan`` (the epoch's batch rows); returns the mean over iterations of
    the summed update losses."""
    iterations = math.ceil(config.epoch_size / method.spec.batch_size)
    method.train_mode(model)
    loss_sum = torch.zeros((), device=method.source.stamps.device)
    for i in range(iterations):
        optimizer.lr = learning_rate_at(config, state.iteration)
        steps = method.losses(model, plan, i)
        while True:
            with autocast:  # the method's forward pass runs inside next()
                loss = next(steps, None)
            if loss is None:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        state.iteration += 1
    return loss_sum.item() / iterations  # the epoch's one host-device sync


def _keep_best(state: TrainingState, model, bacc: float) -> None:
    state.best_bacc, state.best_epoch = bacc, state.epoch
    state.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _record_epoch(state: TrainingState, model, train_loss: float | None, bacc: float,
                  ties: str = DEFAULTS.best_epoch_ties) -> None:
    """History, best weights and the early-stopping counter after an epoch.

    A strictly better BACC is a new best and resets the patience counter; an
    equal BACC moves the best epoch (and weights) to this epoch when ``ties``
    is ``latest`` but does not reset the counter.
    """
    if bacc > state.best_bacc:
        _keep_best(state, model, bacc)
        state.epochs_since_best = 0
    else:
        if bacc == state.best_bacc and ties == "latest":
            _keep_best(state, model, bacc)
        state.epochs_since_best += 1
    state.history.append({"epoch": state.epoch, "val_bacc": bacc, "train_loss": train_loss})


def seed_keys(spec) -> tuple:
    """The keys of a run's init, batch and dropout seeds: the run without its lambda.

    Common random numbers: every lambda of a (method, pair, shots, split) starts from the same
    weights and sees the same batches and dropout draws, so two lambdas' results differ by the
    effect of lambda, not by other draws (docs/method.md). The lambda's place holds None, the value
    of runs without a lambda, so those keep the seeds they always had.
    """
    return (spec.method, spec.source, spec.target, spec.split, spec.shots, None)


def _same_job(methods: list[TrainingMethod]) -> None:
    """Members of one job differ in lambda only: they share the data, the seeds and the batch stream."""
    if not methods:
        raise SettingError("lambda", "at least one member to train")
    first = methods[0]
    for m in methods[1:]:
        if type(m) is not type(first) or replace(m.spec, lam=first.spec.lam) != first.spec:
            raise SettingError("lambda", "members of one job that differ in lambda only "
                                         f"(got {first.spec} and {m.spec})")
        if m.surveys is not first.surveys:
            raise SettingError("data", "members of one job that share one set of loaded surveys")
    lams = [m.spec.lam for m in methods]
    if len(set(lams)) != len(lams):
        raise SettingError("lambda", "distinct lambdas, each once", ", ".join(map(str, lams)))


class _Member:
    """One run of a job: its model, optimiser, batch generator, training state, torch RNG state
    (its dropout stream, swapped in while it steps) and checkpoint."""

    def __init__(self, method: TrainingMethod, config: TrainConfig, init_state: dict | None,
                 checkpoint: Path | None, fingerprint_extra: dict):
        spec, device = method.spec, method.source.stamps.device
        self.method, self.device = method, device
        torch.manual_seed(derive_seed(spec.seed, "init", *seed_keys(spec)))
        model = method.build_model(init_state).to(device)
        self.model = apply_memory_format(config.memory_format, model, method.surveys.values())
        groups = parameter_groups(self.model.backbone, self.model, config.backbone_lr_scale,
                                  config.backbone_dense_lr_scale, config.head_lr_scale)
        self.optimizer = MomentumSGD(groups, lr=config.lr, momentum=config.momentum,
                                     weight_decay=config.weight_decay, nesterov=config.nesterov)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(derive_seed(spec.seed, "batches", *seed_keys(spec)))
        torch.manual_seed(derive_seed(spec.seed, "dropout", *seed_keys(spec)))
        self.expected = fingerprint(method, config, device, fingerprint_extra)
        self.checkpoint = checkpoint
        self.state, self.resumed_from = TrainingState(), None
        if checkpoint is not None and checkpoint.exists():
            self.state = resume(load_checkpoint(checkpoint, self.expected), self.model, self.optimizer,
                                self.generator, checkpoint)
            self.resumed_from = self.state.epoch
        self.rng = torch.get_rng_state()  # after the dropout seed, or the checkpoint's
        self.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.val_survey, val_idx = method.validation()
        self.val_rows = self.val_survey.rows(val_idx)
        self.stopped = False

    @contextlib.contextmanager
    def own_rng(self):
        """torch's global RNG holds this member's stream while it steps (dropout draws from it)."""
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.device)
        try:
            yield
        finally:
            self.rng = torch.get_rng_state()
            if self.cuda_rng is not None:
                self.cuda_rng = torch.cuda.get_rng_state(self.device)

    def done(self, config: TrainConfig) -> bool:
        return self.state.epoch >= config.max_epochs or self.state.epochs_since_best >= config.patience

    def save(self) -> None:
        if self.checkpoint is not None:
            with self.own_rng():
                save_checkpoint(self.checkpoint, self.expected, self.model, self.optimizer, self.generator,
                                self.state)


class _BatchStream:
    """The job's one batch stream: an epoch's batch rows are drawn once and shared by every member
    whose batch generator is in the same state (all members, unless a resume left them apart)."""

    def __init__(self) -> None:
        self._plans: list[tuple[torch.Tensor, dict, torch.Tensor]] = []

    def plan(self, member: _Member, iterations: int) -> dict[str, torch.Tensor]:
        before = member.generator.get_state()
        for state, plan, after in self._plans:
            if torch.equal(state, before):
                member.generator.set_state(after)
                return plan
        plan = member.method.plan_epoch(iterations, member.generator)
        self._plans.append((before, plan, member.generator.get_state()))
        return plan


def _job_status(members: list[_Member], losses: dict[int, float], baccs: dict[int, float]) -> str:
    if len(members) == 1:
        return _status(members[0].state, losses.get(0, float("nan")), baccs.get(0, float("nan")))
    return " | ".join(f"lambda {m.method.spec.lam}: best {m.state.best_bacc:.4f} @ {m.state.best_epoch}"
                      + (" (stopped)" if m.stopped else "") for m in members)


def train_members(
    methods: list[TrainingMethod],
    config: TrainConfig,
    init_state: dict | None = None,
    checkpoints: list[Path | None] | None = None,
    fingerprint_extra: dict | None = None,
    progress_stream: TextIO | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> list[TrainingResult]:
    """Train the members of one job (runs that differ in lambda only); one result per member.

    The members share the surveys and one batch stream (an epoch's batch rows are drawn once) and
    step one after another, epoch by epoch, each on every batch of the epoch; each keeps its own
    model, optimiser, dropout stream, best epoch, early-stopping counter and checkpoint, so each
    ends with the numbers it ends with when trained alone (tests/test_members.py). A member stopped
    by patience stops stepping; the others go on. A member's ``wall_seconds`` counts its own steps
    and validations. ``on_epoch_end(epoch)`` is called after every member's epoch ``epoch`` and
    its checkpoint (a hook for tests that interrupt a job). When the memory format resolves to
    channels-last (``auto`` on CPU), the surveys' stamps are converted in place.
    """
    config.check()
    _same_job(methods)
    checkpoints = [None] * len(methods) if checkpoints is None else [None if c is None else Path(c) for c in checkpoints]
    if len(checkpoints) != len(methods):
        raise SettingError("checkpoint", f"one checkpoint path per member ({len(methods)})", len(checkpoints))
    spec, device = methods[0].spec, methods[0].source.stamps.device
    config = replace(config, memory_format=resolve_memory_format(config.memory_format, device))
    members = [_Member(m, config, init_state, c, fingerprint_extra or {}) for m, c in zip(methods, checkpoints)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()
    iterations = math.ceil(config.epoch_size / spec.batch_size)
    label = f"{spec.method} {spec.source}" + (f"->{spec.target}" if spec.target else "") + f" split {spec.split}"
    if len(members) > 1:
        label += f" ({len(members)} lambdas)"
    resumed = [m.resumed_from for m in members if m.resumed_from is not None]
    if resumed:
        label += f" (resumed after epoch {min(resumed)})"

    for m in members:
        started = time.monotonic()
        if m.state.epoch == 0 and config.epoch_zero_candidate and spec.method in ADAPTATION_METHODS:
            # the starting model is epoch 0: a candidate for the best epoch, not a patience epoch
            with m.own_rng():
                bacc = _validation_bacc(m.method, m.model, m.val_survey, m.val_rows)
            _keep_best(m.state, m.model, bacc)
            m.state.history.append({"epoch": 0, "val_bacc": bacc, "train_loss": None})
        m.state.elapsed_seconds += time.monotonic() - started
        m.stopped = m.done(config)
    first_epoch = min(m.state.epoch for m in members)  # the bar counts this process's epochs
    progress = Progress(config.max_epochs - first_epoch, label, unit="epochs", log_every=float("inf"),
                        stream=progress_stream)
    status = "resumed with nothing left to train"
    try:
        while not all(m.stopped for m in members):
            stream = _BatchStream()
            epoch = min(m.state.epoch for m in members if not m.stopped) + 1
            losses, baccs = {}, {}
            for j, m in enumerate(members):
                if m.stopped or m.state.epoch + 1 != epoch:
                    continue
                started = time.monotonic()
                m.state.epoch = epoch
                with m.own_rng():
                    m.method.begin_epoch(m.state.iteration)
                    plan = stream.plan(m, iterations)
                    losses[j] = _train_epoch(m.method, m.model, m.optimizer, plan, config, m.state, autocast)
                    if math.isfinite(losses[j]):
                        baccs[j] = _validation_bacc(m.method, m.model, m.val_survey, m.val_rows)
                if not math.isfinite(losses[j]):
                    if m.checkpoint is not None:  # resuming would diverge again (the others resume from theirs)
                        m.checkpoint.unlink(missing_ok=True)
                    raise RbdaError(f"training diverged: the mean loss of epoch {epoch} is {losses[j]} "
                                    f"(lr {config.lr}, lambda {m.method.spec.lam}); no output written")
                _record_epoch(m.state, m.model, losses[j], baccs[j], config.best_epoch_ties)
                m.stopped = m.done(config)
                m.state.elapsed_seconds += time.monotonic() - started
                if m.stopped or epoch % config.checkpoint_every_epochs == 0:
                    m.save()  # a stopped member's too: a resumed job knows it is done
            status = _job_status(members, losses, baccs)
            log_line_due = epoch % config.log_every_epochs == 0
            if progress.live or log_line_due:
                progress.update(epoch - first_epoch, status, force=log_line_due)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
    except BaseException:
        progress.close()
        raise
    progress.done = max(m.state.epoch for m in members) - first_epoch
    stopped_by = ["patience" if m.state.epochs_since_best >= config.patience else "max_epochs" for m in members]
    progress.close(f"{status} | stopped by {', '.join(sorted(set(stopped_by)))}")

    results = []
    for m, why in zip(members, stopped_by):
        m.model.load_state_dict(m.state.best_weights)
        results.append(TrainingResult(model=m.model, state=m.state, stopped_by=why,
                                      wall_seconds=m.state.elapsed_seconds, resumed_from_epoch=m.resumed_from,
                                      device=device.type, threads=torch.get_num_threads(),
                                      memory_format=config.memory_format))
    return results


def train(
    method: TrainingMethod,
    config: TrainConfig,
    init_state: dict | None = None,
    checkpoint: str | Path | None = None,
    fingerprint_extra: dict | None = None,
    progress_stream: TextIO | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainingResult:
    """Train ``method``'s model; return it holding the best validation weights (a job of one
    member: :func:`train_members`)."""
    return train_members([method], config, init_state, [checkpoint], fingerprint_extra, progress_stream,
                         on_epoch_end)[0]
