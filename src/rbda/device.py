"""Where and how tensors live: device, thread count, determinism, memory layout.

* :func:`resolve_device` -- ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
* :func:`resolve_memory_format` -- ``auto`` is channels-last on CPU and the
  standard (contiguous) layout on CUDA.
* :func:`apply_memory_format` -- put a model and surveys' stamps in a layout.
* :func:`configure_torch` -- threads and deterministic algorithms, before any
  tensor work.
"""

from __future__ import annotations

import contextlib
import os

import torch

from rbda.errors import SettingError
from rbda.study import DEVICES, MEMORY_FORMATS


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
    raise SettingError("device", " or ".join(DEVICES), setting)


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


def apply_memory_format(memory_format: str, model: torch.nn.Module, surveys) -> torch.nn.Module:
    """Put ``model`` and the ``surveys``' stamps (in place) in a resolved memory format.

    A batch gather keeps the stamps' layout, so batches and model agree.
    """
    if memory_format == "channels_last":
        for survey in surveys:
            survey.stamps = survey.stamps.contiguous(memory_format=torch.channels_last)
        return model.to(memory_format=torch.channels_last)
    return model


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
