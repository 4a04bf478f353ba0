"""``task: multiclass``: the survey's original classes as labels (RELATED.md E.2).

* Labels: the Parquet ``class`` column mapped to indices of
  :data:`rbda.study.SURVEY_CLASSES` (a fixed order, recorded in the run JSON).
* :func:`balanced_split`: validation and test parts with the same number of items of
  every class (TwoAlert: 200 and 100 per class), the rest of each class to train. A
  class with too few items is an error naming the survey, class, count and need.
* :func:`check_balanced`: a split loaded for a multiclass run must be such a split.

Training batches are class-balanced by :class:`rbda.learn.data.BalancedSampler` over the
K classes; the metrics on the test part are :mod:`rbda.learn.metrics`'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rbda.errors import InputFileError, RbdaError, SettingError
from rbda.ingest.splits import Split, split_seed
from rbda.study import MULTICLASS_TEST_PER_CLASS, MULTICLASS_VAL_PER_CLASS, SURVEY_CLASSES


def survey_classes(survey: str) -> tuple[str, ...]:
    """The class names of ``survey`` in label order; a setting error for a survey without them."""
    if survey not in SURVEY_CLASSES:
        raise SettingError("task", f"'binary' for survey {survey!r}: multiclass needs a survey with original "
                                   f"classes ({', '.join(SURVEY_CLASSES)})", "multiclass")
    return SURVEY_CLASSES[survey]


def class_indices(classes: np.ndarray, survey: str, path: str | Path) -> np.ndarray:
    """Indices into :func:`survey_classes` of each item's class name (int8)."""
    names = survey_classes(survey)
    classes = np.asarray(classes).astype(str)
    unknown = sorted(set(np.unique(classes).tolist()) - set(names))
    if unknown:
        raise InputFileError(path, f"{survey} classes {', '.join(names)} in column 'class', got {unknown}")
    lookup = {name: k for k, name in enumerate(names)}
    return np.array([lookup[c] for c in classes], dtype=np.int8)


def read_class_indices(path: str | Path, survey: str) -> np.ndarray:
    """The multiclass labels of a preprocessed survey file (its ``class`` column)."""
    from rbda.ingest.store import _open_survey, _strings

    path = Path(path)
    parquet, _ = _open_survey(path, survey)
    return class_indices(_strings(path, parquet, "class"), survey, path)


def balanced_split(labels: np.ndarray, survey: str, split: int, seed: int,
                   val_per_class: int = MULTICLASS_VAL_PER_CLASS,
                   test_per_class: int = MULTICLASS_TEST_PER_CLASS) -> Split:
    """``val_per_class`` and ``test_per_class`` rows of every class, the rest to train.

    Each class's rows are shuffled by a generator seeded from ``(seed, survey,
    split)`` (the same derivation as :func:`rbda.ingest.splits.make_split`) and a
    distinct ``"multiclass"`` key; a class needs ``val + test + 1`` rows.
    """
    names = survey_classes(survey)
    for setting, value in (("val_per_class", val_per_class), ("test_per_class", test_per_class)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SettingError(setting, "a positive integer", value)
    labels = np.asarray(labels)
    need = val_per_class + test_per_class + 1
    derived = split_seed(seed, survey, split)
    generator = np.random.default_rng([derived, 0x6D63])  # 0x6D63 = "mc": not the binary split's stream
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for k, name in enumerate(names):
        rows = np.flatnonzero(labels == k)
        if rows.size < need:
            raise RbdaError(f"survey {survey!r}: class {name!r} has {rows.size} items; a balanced multiclass "
                            f"split needs {need} ({val_per_class} validation + {test_per_class} test + at least "
                            "1 to train); lower val_per_class/test_per_class or add data")
        shuffled = generator.permutation(rows)
        parts["val"].append(shuffled[:val_per_class])
        parts["test"].append(shuffled[val_per_class:val_per_class + test_per_class])
        parts["train"].append(shuffled[val_per_class + test_per_class:])
    extra = np.setdiff1d(np.unique(labels), np.arange(len(names)))
    if extra.size:
        raise RbdaError(f"survey {survey!r}: labels {extra.tolist()} outside 0..{len(names) - 1}")
    arrays = {p: np.sort(np.concatenate(v)).astype(np.int64) for p, v in parts.items()}
    return Split(**arrays, n_rows=int(labels.size), seed=derived)


def check_balanced(split: Split, labels: np.ndarray, survey: str, where: str | Path) -> None:
    """An error naming ``where`` unless the validation and test parts hold every class equally."""
    k = len(survey_classes(survey))
    for part in ("val", "test"):
        counts = np.bincount(np.asarray(labels)[split.part(part)], minlength=k)
        if counts.min() == 0 or counts.min() != counts.max():
            raise InputFileError(where, f"a multiclass split (`rbda split --task multiclass`): the {part} part "
                                        f"with the same count of each class, got {counts.tolist()}")
