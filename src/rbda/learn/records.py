"""The run record: the JSON a training run writes (schema ``rbda.run/1``, docs/architecture.md)."""

from __future__ import annotations

import platform

from rbda import __version__
from rbda.provenance import learning_core_sha256, lock_provenance, run_code_sha256
from rbda.study import RUN_SCHEMA


def versions(method: str | None = None, backbone: str | None = None) -> dict:
    """Versions of rbda, torch and Python in this process, the hashes of the code (:mod:`rbda.provenance`)
    and of the dependency lock. ``code_sha256``: the code a run of ``method`` with ``backbone``
    executes (shared learning core, its method and backbone modules); without a method, the shared
    core's (``shared_code_sha256``, also recorded for runs)."""
    import torch

    shared = learning_core_sha256()
    code = shared if method is None else run_code_sha256(method, backbone)
    return {"rbda": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "code_sha256": code, "shared_code_sha256": shared, **lock_provenance()}


def run_record(method, config, result, evaluations: list[dict], errors: dict | None = None) -> dict:
    """The run JSON of a finished training run (``errors``: a baseline's most confident test errors,
    rbda.learn.evaluate.confident_errors; the key is absent when None)."""
    spec = method.spec
    state = result.state
    record = {
        "schema": RUN_SCHEMA,
        "method": spec.method, "source": spec.source, "target": spec.target,
        "split": spec.split, "shots": spec.shots, "lambda": spec.lam, "seed": spec.seed,
        "evaluations": evaluations,
        "validation": {"best_bacc": state.best_bacc, "best_epoch": state.best_epoch, "history": state.history},
        "training": {
            "epochs_run": state.epoch, "best_epoch": state.best_epoch, "iterations": state.iteration,
            "epoch_zero_won": state.best_epoch == 0,
            "stopped_by": result.stopped_by, "wall_seconds": round(result.wall_seconds, 3),
            "device": result.device, "threads": result.threads,
            "resumed_from_epoch": result.resumed_from_epoch,
            "memory_format": result.memory_format, "bf16": config.bf16,
        },
        "hyperparameters": {
            "lr": config.lr, "momentum": config.momentum, "batch_size": spec.batch_size,
            "lr_halve_every": config.lr_halve_every, "epoch_size": config.epoch_size,
            "patience": config.patience, "max_epochs": config.max_epochs, "val_shots": spec.val_shots,
            "best_epoch_ties": config.best_epoch_ties, "epoch_zero_candidate": config.epoch_zero_candidate,
            "model": spec.model, "beta": spec.beta, "task": spec.task,
            "lr_schedule": config.lr_schedule, "backbone_lr_scale": config.backbone_lr_scale,
            "backbone_dense_lr_scale": config.backbone_dense_lr_scale, "head_lr_scale": config.head_lr_scale,
            "weight_decay": config.weight_decay, "nesterov": config.nesterov,
            **spec.settings,  # the method's own settings (rbda.registry), if it has any
        },
        "data": method.describe(),
        "versions": versions(spec.method, spec.model),
    }
    if errors is not None:
        record["errors"] = errors
    return record
