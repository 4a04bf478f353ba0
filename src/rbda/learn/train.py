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
Resumable through :mod:`rbda.learn.checkpoint`; device and layout set-up in
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


def _train_epoch(method: TrainingMethod, model, optimizer, generator, config: TrainConfig,
                 state: TrainingState, autocast) -> float:
    """One epoch of updates; returns the mean over iterations of the summed update losses."""
    iterations = math.ceil(config.epoch_size / method.spec.batch_size)
    method.begin_epoch(state.iteration)
    plan = method.plan_epoch(iterations, generator)
    method.train_mode(model)
    loss_sum = torch.zeros((), device=generator.device)
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


def train(
    method: TrainingMethod,
    config: TrainConfig,
    init_state: dict | None = None,
    checkpoint: str | Path | None = None,
    fingerprint_extra: dict | None = None,
    progress_stream: TextIO | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainingResult:
    """Train ``method``'s model; return it holding the best validation weights.

    ``on_epoch_end(epoch)`` is called after each epoch's checkpoint (a hook
    for tests that interrupt a run). When the memory format resolves to
    channels-last (``auto`` on CPU), the method's survey stamps are converted
    in place (same values, another memory layout).
    """
    config.check()
    started = time.monotonic()
    spec = method.spec
    device = method.source.stamps.device
    seed_keys = (spec.method, spec.source, spec.target, spec.split, spec.shots, spec.lam)
    torch.manual_seed(derive_seed(spec.seed, "init", *seed_keys))
    config = replace(config, memory_format=resolve_memory_format(config.memory_format, device))
    model = method.build_model(init_state).to(device)
    model = apply_memory_format(config.memory_format, model, method.surveys.values())
    groups = parameter_groups(model.backbone, model, config.backbone_lr_scale, config.backbone_dense_lr_scale,
                              config.head_lr_scale)
    optimizer = MomentumSGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                            nesterov=config.nesterov)
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(spec.seed, "batches", *seed_keys))
    torch.manual_seed(derive_seed(spec.seed, "dropout", *seed_keys))

    expected = fingerprint(method, config, device, fingerprint_extra or {})
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    state, resumed_from = TrainingState(), None
    if checkpoint is not None and checkpoint.exists():
        state = resume(load_checkpoint(checkpoint, expected), model, optimizer, generator, checkpoint)
        resumed_from = state.epoch

    val_survey, val_idx = method.validation()
    val_rows = val_survey.rows(val_idx)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()
    label = f"{spec.method} {spec.source}" + (f"->{spec.target}" if spec.target else "") + f" split {spec.split}"
    if resumed_from is not None:
        label += f" (resumed after epoch {resumed_from})"
    if state.epoch == 0 and config.epoch_zero_candidate and spec.method in ADAPTATION_METHODS:
        # the starting model is epoch 0: a candidate for the best epoch, not a patience epoch
        bacc = _validation_bacc(method, model, val_survey, val_rows)
        _keep_best(state, model, bacc)
        state.history.append({"epoch": 0, "val_bacc": bacc, "train_loss": None})
    first_epoch = state.epoch  # the bar counts this process's epochs, so rate and ETA hold after a resume
    progress = Progress(config.max_epochs - first_epoch, label, unit="epochs", log_every=float("inf"),
                        stream=progress_stream)
    status = "resumed with nothing left to train"
    try:
        while state.epoch < config.max_epochs and state.epochs_since_best < config.patience:
            state.epoch += 1
            train_loss = _train_epoch(method, model, optimizer, generator, config, state, autocast)
            if not math.isfinite(train_loss):
                if checkpoint is not None:
                    checkpoint.unlink(missing_ok=True)  # resuming would diverge again
                raise RbdaError(f"training diverged: the mean loss of epoch {state.epoch} is {train_loss} "
                                f"(lr {config.lr}, lambda {spec.lam}); no output written")
            bacc = _validation_bacc(method, model, val_survey, val_rows)
            _record_epoch(state, model, train_loss, bacc, config.best_epoch_ties)
            now = time.monotonic()
            state.elapsed_seconds, started = state.elapsed_seconds + now - started, now
            if checkpoint is not None and state.epoch % config.checkpoint_every_epochs == 0:
                save_checkpoint(checkpoint, expected, model, optimizer, generator, state)
            # live bar: every epoch (Progress throttles it); a log: one line per log_every_epochs
            status = _status(state, train_loss, bacc)
            log_line_due = state.epoch % config.log_every_epochs == 0
            if progress.live or log_line_due:
                progress.update(state.epoch - first_epoch, status, force=log_line_due)
            if on_epoch_end is not None:
                on_epoch_end(state.epoch)
    except BaseException:
        progress.close()
        raise
    stopped_by = "patience" if state.epochs_since_best >= config.patience else "max_epochs"
    progress.done = state.epoch - first_epoch
    progress.close(f"{status} | stopped by {stopped_by}")

    state.elapsed_seconds += time.monotonic() - started
    model.load_state_dict(state.best_weights)
    return TrainingResult(model=model, state=state, stopped_by=stopped_by, wall_seconds=state.elapsed_seconds,
                          resumed_from_epoch=resumed_from, device=device.type, threads=torch.get_num_threads(),
                          memory_format=config.memory_format)
