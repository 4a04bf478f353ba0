"""The one training loop, shared by every method.

:func:`train` drives a :class:`~rbda.methods.base.TrainingMethod`: SGD with
momentum, the learning rate halved every ``lr_halve_every`` iterations,
epochs of ``epoch_size`` labelled items (``ceil(epoch_size / batch_size)``
iterations), validation balanced accuracy after every epoch, early stopping
after ``patience`` epochs without improvement, the best weights kept.

Batches are planned a whole epoch at a time (one vectorised draw of row
indices) and gathered from in-memory tensors; the loss is summed on the device
and read once per epoch (a NaN/inf loss stops the run with an error).

Resumable: every ``checkpoint_every_epochs`` epochs the full training state
(model, optimiser, best weights, history, early-stopping counters, the batch
generator's and torch's RNG states) is written atomically. A run started with
a checkpoint of the same identity continues from it and ends with the same
numbers as an uninterrupted run; a checkpoint of another identity is refused.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, TextIO

import torch

from rbda import __version__
from rbda.atomic import atomic_path
from rbda.errors import InputFileError, RbdaError, SettingError
from rbda.evaluate import evaluate_rows
from rbda.methods.base import TrainingMethod
from rbda.models import StampClassifier
from rbda.progress import Progress
from rbda.seeding import derive_seed

CHECKPOINT_FORMAT = "rbda.checkpoint/1"
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
RUN_SCHEMA = "rbda.run/1"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run settings (the study's values are the defaults)."""

    lr: float = 0.01
    momentum: float = 0.9
    lr_halve_every: int = 100_000
    epoch_size: int = 10_000
    patience: int = 100
    max_epochs: int = 1000
    log_every_epochs: int = 10
    checkpoint_every_epochs: int = 1
    memory_format: str = "auto"  # see resolve_memory_format
    bf16: bool = False

    def check(self) -> None:
        positive = {"lr_halve_every": self.lr_halve_every, "epoch_size": self.epoch_size,
                    "patience": self.patience, "max_epochs": self.max_epochs,
                    "log_every_epochs": self.log_every_epochs,
                    "checkpoint_every_epochs": self.checkpoint_every_epochs}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise SettingError(name, "a positive integer", value)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise SettingError("lr", "a positive learning rate", self.lr)
        if not (0 <= self.momentum < 1):
            raise SettingError("momentum", "a value in [0, 1)", self.momentum)
        if self.memory_format not in MEMORY_FORMATS:
            raise SettingError("memory_format", " or ".join(MEMORY_FORMATS), self.memory_format)

    def identity(self) -> dict:
        """Settings that change the numbers a run produces."""
        keys = ("lr", "momentum", "lr_halve_every", "epoch_size", "patience", "max_epochs", "memory_format", "bf16")
        return {k: getattr(self, k) for k in keys}


@dataclass
class TrainingState:
    """Everything that changes during training (what a checkpoint holds)."""

    epoch: int = 0
    iteration: int = 0
    best_bacc: float = -1.0
    best_epoch: int = 0
    epochs_since_best: int = 0
    best_weights: dict | None = None
    history: list = field(default_factory=list)
    elapsed_seconds: float = 0.0


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


class MomentumSGD:
    """SGD with momentum, updated by torch's own SGD kernel (``torch.optim.sgd.sgd``).

    The same update as ``torch.optim.SGD(params, lr, momentum)`` (a test
    checks they agree exactly). Constructing ``torch.optim.SGD`` imports
    TorchDynamo, which costs 0.7-2 s in every training process; the workflow
    runs hundreds of short ones.
    """

    def __init__(self, params, lr: float, momentum: float):
        self.params = list(params)
        self.lr = lr
        self.momentum = momentum
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.sgd import sgd

        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        buffers = [self.buffers[i] for i in live]
        sgd([self.params[i] for i in live], [self.params[i].grad for i in live], buffers,
            weight_decay=0.0, momentum=self.momentum, lr=self.lr, dampening=0.0, nesterov=False, maximize=False)
        for i, buffer in zip(live, buffers):
            self.buffers[i] = buffer

    def state_dict(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "buffers": list(self.buffers)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["buffers"]) != len(self.params):
            raise ValueError("optimizer state of another model")
        self.lr, self.momentum = state["lr"], state["momentum"]
        self.buffers = [None if b is None else b.to(p.device) for b, p in zip(state["buffers"], self.params)]


def resolve_device(setting: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda":
        if not torch.cuda.is_available():
            raise SettingError("device", "a machine with a CUDA GPU for 'cuda' (none found; use auto or cpu)", setting)
        return torch.device("cuda")
    raise SettingError("device", "auto, cpu or cuda", setting)


def resolve_memory_format(setting: str, device: torch.device) -> str:
    """``auto`` is channels-last on CPU and the standard (contiguous) layout on CUDA.

    Both are float32 and the same model; only the tensors' memory layout
    differs, so results agree up to floating-point rounding. On CPU oneDNN's
    channels-last convolutions train this CNN about 1.6x faster and run
    inference about 2x faster (``benchmarks/bench_training.py``); on CUDA the
    standard layout is the conventional float32 choice (not measured here:
    no GPU).
    """
    if setting not in MEMORY_FORMATS:
        raise SettingError("memory_format", " or ".join(MEMORY_FORMATS), setting)
    if setting == "auto":
        return "channels_last" if device.type == "cpu" else "contiguous"
    return setting


def configure_torch(threads: int | None, deterministic: bool) -> None:
    """Thread count and deterministic algorithms, before any tensor work."""
    if threads is not None:
        if threads < 1:
            raise SettingError("threads", "a positive integer", threads)
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
            torch.set_num_interop_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def _identity(method: TrainingMethod, config: TrainConfig, device: torch.device, extra: dict) -> dict:
    data = {name: {"n_rows": s.split.n_rows, "split_seed": s.split.seed} for name, s in sorted(method.surveys.items())}
    return {"run": method.spec.identity(), "config": config.identity(), "device": device.type,
            "data": data, **extra}


def _difference(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _difference(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: checkpoint {va!r}, now {vb!r}")
    return out


def _save_checkpoint(path: Path, identity: dict, model, optimizer, generator, state: TrainingState) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT, "identity": identity, "state": asdict(state),
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if generator.device.type == "cuda" else [],
    }
    with atomic_path(path, suffix=".ckpt.tmp") as tmp:
        torch.save(payload, tmp)


def _load_checkpoint(path: Path, identity: dict) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputFileError(path, f"a training checkpoint ({type(exc).__name__}: {exc}); delete it to start afresh") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputFileError(path, f"a training checkpoint of format {CHECKPOINT_FORMAT!r}; delete it to start afresh")
    differences = _difference(payload["identity"], identity)
    if differences:
        raise InputFileError(
            path,
            "a checkpoint of this run, but it was written by a run with other arguments ("
            + "; ".join(differences) + "); delete it or use another --checkpoint path",
        )
    return payload


def learning_rate_at(config: TrainConfig, iteration: int) -> float:
    """The study's schedule: the base rate halved every ``lr_halve_every`` iterations."""
    return config.lr * 0.5 ** (iteration // config.lr_halve_every)


def _status(state: TrainingState, loss: float, bacc: float) -> str:
    return f"loss {loss:.4f} | val BACC {bacc:.4f} | best {state.best_bacc:.4f} @ epoch {state.best_epoch}"


def apply_memory_format(memory_format: str, model: StampClassifier, surveys) -> StampClassifier:
    """Put ``model`` and the ``surveys``' stamps (in place) in a resolved memory format.

    A batch gather keeps the stamps' layout, so batches and model agree.
    """
    if memory_format == "channels_last":
        for survey in surveys:
            survey.stamps = survey.stamps.contiguous(memory_format=torch.channels_last)
        return model.to(memory_format=torch.channels_last)
    return model


def _resume(payload: dict, model, optimizer, generator) -> TrainingState:
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"]:
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    return TrainingState(**payload["state"])


def _train_epoch(method: TrainingMethod, model, optimizer, generator, config: TrainConfig,
                 state: TrainingState, autocast) -> float:
    """One epoch of updates; returns the mean over iterations of the summed update losses."""
    iterations = math.ceil(config.epoch_size / method.spec.batch_size)
    plan = method.plan_epoch(iterations, generator)
    model.train()
    loss_sum = torch.zeros((), device=generator.device)
    for i in range(iterations):
        if i == 0 or state.iteration % config.lr_halve_every == 0:
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


def _record_epoch(state: TrainingState, model, train_loss: float, bacc: float) -> None:
    """History, best weights and the early-stopping counter after an epoch."""
    if bacc > state.best_bacc:
        state.best_bacc, state.best_epoch, state.epochs_since_best = bacc, state.epoch, 0
        state.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        state.epochs_since_best += 1
    state.history.append({"epoch": state.epoch, "val_bacc": bacc, "train_loss": train_loss})


def train(
    method: TrainingMethod,
    config: TrainConfig,
    init_state: dict | None = None,
    checkpoint: str | Path | None = None,
    identity_extra: dict | None = None,
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
    optimizer = MomentumSGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(spec.seed, "batches", *seed_keys))
    torch.manual_seed(derive_seed(spec.seed, "dropout", *seed_keys))

    identity = _identity(method, config, device, identity_extra or {})
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    state, resumed_from = TrainingState(), None
    if checkpoint is not None and checkpoint.exists():
        state = _resume(_load_checkpoint(checkpoint, identity), model, optimizer, generator)
        resumed_from = state.epoch

    val_survey, val_idx = method.validation()
    val_rows = val_survey.rows(val_idx)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()
    label = f"{spec.method} {spec.source}" + (f"->{spec.target}" if spec.target else "") + f" split {spec.split}"
    if resumed_from is not None:
        label += f" (resumed after epoch {resumed_from})"
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
            bacc = evaluate_rows(model, val_survey.stamps, val_survey.labels, val_rows).balanced_accuracy()
            _record_epoch(state, model, train_loss, bacc)
            now = time.monotonic()
            state.elapsed_seconds, started = state.elapsed_seconds + now - started, now
            if checkpoint is not None and state.epoch % config.checkpoint_every_epochs == 0:
                _save_checkpoint(checkpoint, identity, model, optimizer, generator, state)
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


def evaluate_method(method: TrainingMethod, model: StampClassifier) -> list[dict]:
    """Confusion counts and BACC on every test part the method names."""
    results = []
    for ev in method.evaluations():
        rows = ev.survey.rows(ev.survey.split.part(ev.part))
        counts = evaluate_rows(model, ev.survey.stamps, ev.survey.labels, rows)
        results.append({"survey": ev.survey.name, "role": ev.role, "part": ev.part, **counts.as_dict()})
    return results


def versions() -> dict:
    return {"rbda": __version__, "torch": torch.__version__, "python": platform.python_version()}


def run_record(method: TrainingMethod, config: TrainConfig, result: TrainingResult, evaluations: list[dict]) -> dict:
    """The run JSON of docs/architecture.md (schema ``rbda.run/1``)."""
    spec = method.spec
    state = result.state
    return {
        "schema": RUN_SCHEMA,
        "method": spec.method, "source": spec.source, "target": spec.target,
        "split": spec.split, "shots": spec.shots, "lambda": spec.lam, "seed": spec.seed,
        "evaluations": evaluations,
        "validation": {"best_bacc": state.best_bacc, "best_epoch": state.best_epoch, "history": state.history},
        "training": {
            "epochs_run": state.epoch, "best_epoch": state.best_epoch, "iterations": state.iteration,
            "stopped_by": result.stopped_by, "wall_seconds": round(result.wall_seconds, 3),
            "device": result.device, "threads": result.threads,
            "resumed_from_epoch": result.resumed_from_epoch,
            "memory_format": result.memory_format, "bf16": config.bf16,
        },
        "hyperparameters": {
            "lr": config.lr, "momentum": config.momentum, "batch_size": spec.batch_size,
            "lr_halve_every": config.lr_halve_every, "epoch_size": config.epoch_size,
            "patience": config.patience, "max_epochs": config.max_epochs, "val_shots": spec.val_shots,
        },
        "data": method.describe(),
        "versions": versions(),
    }


def load_survey_data(name: str, parquet: str | Path, split_file: str | Path, device: torch.device,
                     memory_format: str = "contiguous"):
    """Load a preprocessed survey and its split onto ``device``, stamps in ``memory_format`` (resolved).

    Checks that the file holds survey ``name`` and that the split was made
    for a survey of this many rows.
    """
    import numpy as np

    from rbda.methods.base import SurveyData
    from rbda.splits import load_split, read_survey_arrays

    stamps_np, labels_np = read_survey_arrays(parquet, name, channels_last=memory_format == "channels_last")
    split = load_split(split_file, n_rows=labels_np.size)
    return SurveyData(name=name, stamps=torch.from_numpy(stamps_np).to(device), labels=torch.from_numpy(labels_np.astype(np.int64)).to(device),
                      labels_np=labels_np, split=split)
