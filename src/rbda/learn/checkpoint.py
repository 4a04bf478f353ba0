"""Resumable training state: what a checkpoint holds, writes and must match.

Every ``checkpoint_every_epochs`` epochs the loop writes the full training
state (model, optimiser, best weights, history, early-stopping counters, the
batch generator's and torch's RNG states) atomically. A run started with a
checkpoint continues from it and ends with the same numbers as an
uninterrupted run, provided the checkpoint's *fingerprint* (the run, the
settings that change its numbers, the device, the data) equals the current
run's; a checkpoint with another fingerprint is refused, naming every
difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rbda.atomic import atomic_path
from rbda.errors import InputFileError
from rbda.provenance import run_code_sha256

CHECKPOINT_FORMAT = "rbda.learn.checkpoint/2"


@dataclass
class TrainingState:
    """Everything that changes during training (what a checkpoint holds besides the tensors)."""

    epoch: int = 0
    iteration: int = 0
    best_bacc: float = -1.0
    best_epoch: int = 0
    epochs_since_best: int = 0
    best_weights: dict | None = None
    history: list = field(default_factory=list)
    elapsed_seconds: float = 0.0


def fingerprint(method, config, device: torch.device, extra: dict) -> dict:
    """What a checkpoint must match to be resumed by this run."""
    data = {name: {"n_rows": s.split.n_rows, "split_seed": s.split.seed} for name, s in sorted(method.surveys.items())}
    # the code and torch that made the state: after a code fix a rerun starts afresh, never from
    # the state the old code left behind
    code = {"code_sha256": run_code_sha256(method.spec.method, method.spec.model), "torch": str(torch.__version__)}
    return {"run": method.spec.as_dict(), "config": config.result_affecting(), "device": device.type,
            "data": data, **code, **extra}


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


def save_checkpoint(path: Path, fingerprint_: dict, model, optimizer, generator, state: TrainingState) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint_, "state": asdict(state),
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if generator.device.type == "cuda" else [],
    }
    with atomic_path(path, suffix=".ckpt.tmp") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, fingerprint_: dict) -> dict:
    """The checkpoint's payload; an error naming the file when it cannot be resumed by this run."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputFileError(path, f"a training checkpoint ({type(exc).__name__}: {exc}); delete it to start afresh") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputFileError(path, f"a training checkpoint of format {CHECKPOINT_FORMAT!r}; delete it to start afresh")
    differences = _difference(payload["fingerprint"], fingerprint_)
    if differences:
        raise InputFileError(
            path,
            "a checkpoint of this run, but it was written by a run with other arguments ("
            + "; ".join(differences) + "); delete it or use another --checkpoint path",
        )
    return payload


def resume(payload: dict, model, optimizer, generator, path: Path) -> TrainingState:
    """Restore model, optimiser and RNG states from a checkpoint payload; return the training state."""
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        generator.set_state(payload["generator"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(path, f"a checkpoint whose state fits this run's model ({exc}); "
                                   "delete it to start afresh") from None
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"]:
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    return TrainingState(**payload["state"])
