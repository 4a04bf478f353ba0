"""A survey in a training or evaluation process, and the samplers that draw batches from it.

:class:`SurveyTensors` holds a preprocessed survey's stamps and labels as
tensors on the device (read by :func:`rbda.ingest.store.read_survey_arrays`, the one
reader of the Parquet store) with its split. Batches are index gathers from
these tensors: no per-item Dataset, no DataLoader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rbda.errors import RbdaError
from rbda.ingest.splits import Split, load_split


@dataclass
class SurveyTensors:
    """One survey in a training process: stamps and labels as tensors, and its split."""

    name: str
    stamps: torch.Tensor  # float32 (N, 3, 21, 21), on the training device
    labels: torch.Tensor  # int64 (N,), same device
    labels_np: np.ndarray  # int8 (N,), for row selection on the host
    split: Split

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        """Row indices as an int64 tensor on the data's device."""
        return torch.as_tensor(np.asarray(idx, dtype=np.int64), device=self.stamps.device)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather stamps and labels of ``rows`` (keeps the stamps' memory format)."""
        return self.stamps[rows], self.labels[rows]


class BalancedSampler:
    """Draw rows with replacement, each draw's class one of ``classes`` with equal probability.

    This oversamples the minority classes, as the study does for every epoch.
    ``classes`` defaults to real/bogus (0, 1); ``task: multiclass`` passes
    ``range(K)``. With two classes the draw is the binary study's, bit for bit.
    """

    def __init__(self, survey: SurveyTensors, idx: np.ndarray, what: str, classes=(0, 1)):
        idx = np.asarray(idx, dtype=np.int64)
        classes = list(classes)
        per_class = [idx[survey.labels_np[idx] == c] for c in classes]
        for cls, rows in zip(classes, per_class):
            if rows.size == 0:
                raise RbdaError(f"{what}: no items of class {cls}; class-balanced sampling needs every class "
                                f"({', '.join(map(str, classes))})")
        device = survey.stamps.device
        # Rows of all classes in one tensor, with each class's offset and count,
        # so that a draw is a handful of tensor operations whatever its size.
        sizes = [rows.size for rows in per_class]
        self.n_classes = len(classes)
        self.rows = torch.as_tensor(np.concatenate(per_class), device=device)
        self.offsets = torch.tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist(), device=device)
        self.counts = torch.tensor(sizes, device=device)

    def draw(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        device = self.rows.device
        cls = torch.randint(0, self.n_classes, shape, generator=generator, device=device)
        u = torch.rand(shape, generator=generator, device=device)
        pos = (u * self.counts[cls]).long().clamp_max_(self.counts[cls] - 1)
        return self.rows[self.offsets[cls] + pos]


class UniformSampler:
    """Draw rows uniformly with replacement (labels are not looked at)."""

    def __init__(self, survey: SurveyTensors, idx: np.ndarray, what: str):
        if len(idx) == 0:
            raise RbdaError(f"{what}: no items to draw from")
        self.rows = survey.rows(idx)

    def draw(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        pick = torch.randint(0, self.rows.numel(), shape, generator=generator, device=self.rows.device)
        return self.rows[pick]


def load_survey_tensors(name: str, parquet: str | Path, split_file: str | Path, device: torch.device,
                        memory_format: str = "contiguous", task: str = "binary") -> SurveyTensors:
    """Load a preprocessed survey and its split onto ``device``, stamps in ``memory_format`` (resolved).

    Checks that the file holds survey ``name`` and that the split was made
    for a survey of this many rows. With ``task="multiclass"`` the labels are
    the original classes' indices (:mod:`rbda.ingest.multiclass`) and the split must
    be a balanced multiclass split.
    """
    from rbda.ingest.store import read_survey_arrays

    stamps, labels = read_survey_arrays(parquet, name, channels_last=memory_format == "channels_last")
    split = load_split(split_file, n_rows=labels.size)
    if task == "multiclass":
        from rbda.ingest.multiclass import check_balanced, read_class_indices

        labels = read_class_indices(parquet, name)
        check_balanced(split, labels, name, split_file)
    return SurveyTensors(name=name, stamps=torch.from_numpy(stamps).to(device),
                         labels=torch.from_numpy(labels.astype(np.int64)).to(device), labels_np=labels, split=split)
