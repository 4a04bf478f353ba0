"""The run record: the JSON a training run writes (schema ``rbda.run/1``, docs/architecture.md)."""

from __future__ import annotations

import platform

from rbda import __version__
from rbda.provenance import learning_core_sha256, lock_provenance
from rbda.study import RUN_SCHEMA


def versions() -> dict:
    """Versions of rbda, torch and Python in this process, the hash of the learning core's code
    and of the dependency lock (:mod:`rbda.provenance`)."""
    import torch

    return {"rbda": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "code_sha256": learning_core_sha256(), **lock_provenance()}


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
            **({"frozen_batch_norm": spec.frozen_bn} if spec.method == "finetune" else {}),
            "lr_schedule": config.lr_schedule, "backbone_lr_scale": config.backbone_lr_scale,
            "backbone_dense_lr_scale": config.backbone_dense_lr_scale, "head_lr_scale": config.head_lr_scale,
            "weight_decay": config.weight_decay, "nesterov": config.nesterov,
            **({"pseudo_label_threshold": spec.tau, "consistency_weight": spec.mu,
                "strong_view_shift": spec.strong_shift} if spec.method == "mmefm" else {}),
            **({"reversal_ramp_iterations": spec.ramp_iterations} if spec.method == "dann" else {}),
            **({"pseudo_label_threshold": spec.tau, "strong_view_shift": spec.strong_shift}
               if spec.method == "cdac" else {}),
        },
        "data": method.describe(),
        "versions": versions(),
    }
    if errors is not None:
        record["errors"] = errors
    return record
