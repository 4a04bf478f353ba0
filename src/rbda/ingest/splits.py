"""Data splits, labelled shots, validation shots and the unlabelled set.

Everything here is a pure function of its arguments: the same (seed, survey,
split, shots) always selects the same rows, in every process and on every
machine (seeds come from :func:`rbda.seeding.derive_seed`).

* :func:`make_split` -- stratified 80/10/10 train/validation/test partition.
* :func:`labelled_shots` -- ``n`` labelled items per class from a train part,
  nested across ``n`` (the 1-shot items are among the 5-shot items, ...).
* :func:`validation_shots` -- ``n`` labelled items per class from a validation
  part (model selection for fine-tuning and MME).
* :func:`unlabelled_rest` -- the train part minus the labelled shots.
* :func:`save_split` / :func:`load_split` -- the ``split-{k}.npz`` file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rbda.atomic import atomic_path
from rbda.errors import InputFileError, RbdaError
from rbda.seeding import derive_seed, rng

PART_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
PARTS = tuple(PART_FRACTIONS)
CLASSES = (0, 1)


@dataclass(frozen=True)
class Split:
    """Sorted int64 row indices of one split's three parts, plus provenance."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    n_rows: int
    seed: int

    def part(self, name: str) -> np.ndarray:
        if name not in PARTS:
            raise RbdaError(f"unknown split part {name!r}; expected one of {', '.join(PARTS)}")
        return getattr(self, name)


def split_seed(seed: int, survey: str, split: int) -> int:
    """The seed of split ``split`` of ``survey`` derived from the study's base seed."""
    return derive_seed(seed, "split", survey, int(split))


def _class_rows(labels: np.ndarray, what: str) -> dict[int, np.ndarray]:
    """Row indices per class; an error if a class is absent or an unknown label occurs."""
    labels = np.asarray(labels)
    unknown = np.setdiff1d(np.unique(labels), CLASSES)
    if unknown.size:
        raise RbdaError(f"{what}: labels must be 0 (bogus) or 1 (real); found {unknown.tolist()}")
    rows = {c: np.flatnonzero(labels == c) for c in CLASSES}
    missing = [c for c in CLASSES if rows[c].size == 0]
    if missing:
        names = {0: "bogus (0)", 1: "real (1)"}
        raise RbdaError(
            f"{what}: has a single class (no {names[missing[0]]} items); "
            "a real/bogus split needs both classes"
        )
    return rows


def make_split(labels: np.ndarray, survey: str, split: int, seed: int) -> Split:
    """Stratified 80/10/10 partition of ``labels`` (0/1) into train/val/test.

    Per class, the rows are shuffled with a generator seeded by
    ``split_seed(seed, survey, split)``; the validation and test parts get
    ``round(0.1 * n_class)`` rows each and the train part the rest. Each class
    needs at least one row in every part (ten rows per class suffice).
    """
    labels = np.asarray(labels)
    derived = split_seed(seed, survey, split)
    generator = np.random.default_rng(derived)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    for cls, rows in _class_rows(labels, f"survey {survey!r}").items():
        shuffled = generator.permutation(rows)
        n_val = int(round(PART_FRACTIONS["val"] * rows.size))
        n_test = int(round(PART_FRACTIONS["test"] * rows.size))
        n_train = rows.size - n_val - n_test
        if min(n_val, n_test, n_train) < 1:
            raise RbdaError(
                f"survey {survey!r}: class {cls} has {rows.size} items, too few for an "
                "80/10/10 split with at least one item of each class in every part "
                "(need at least 10)"
            )
        parts["train"].append(shuffled[:n_train])
        parts["val"].append(shuffled[n_train : n_train + n_val])
        parts["test"].append(shuffled[n_train + n_val :])
    arrays = {p: np.sort(np.concatenate(v)).astype(np.int64) for p, v in parts.items()}
    return Split(**arrays, n_rows=int(labels.size), seed=derived)


def _per_class_prefix(
    rows: np.ndarray, labels: np.ndarray, n: int, generator_keys: tuple, what: str
) -> np.ndarray:
    """The first ``n`` rows of each class in a fixed, seeded order of ``rows``.

    Taking a prefix of one fixed permutation is what makes the selection
    nested across ``n``.
    """
    if n < 0:
        raise RbdaError(f"{what}: the number of items per class must be >= 0, got {n}")
    rows = np.asarray(rows, dtype=np.int64)
    by_class = _class_rows(labels[rows], what)
    chosen = []
    for cls, positions in by_class.items():
        if n > positions.size:
            raise RbdaError(
                f"{what}: asked for {n} items of class {cls} but the part has only "
                f"{positions.size}"
            )
        order = rng(*generator_keys, cls).permutation(np.sort(rows[positions]))
        chosen.append(order[:n])
    return np.sort(np.concatenate(chosen))


def labelled_shots(
    train_idx: np.ndarray, labels: np.ndarray, n: int, seed: int, survey: str, split: int
) -> np.ndarray:
    """``n`` labelled rows per class from ``train_idx``, nested across ``n``."""
    return _per_class_prefix(
        train_idx, np.asarray(labels), n, (seed, "shots", survey, int(split)),
        f"labelled shots of {survey!r} split {split}",
    )


def validation_shots(
    val_idx: np.ndarray, labels: np.ndarray, n: int, seed: int, survey: str, split: int
) -> np.ndarray:
    """``n`` labelled rows per class from the validation part ``val_idx``."""
    return _per_class_prefix(
        val_idx, np.asarray(labels), n, (seed, "val-shots", survey, int(split)),
        f"validation shots of {survey!r} split {split}",
    )


def unlabelled_rest(train_idx: np.ndarray, shots_idx: np.ndarray) -> np.ndarray:
    """The rows of ``train_idx`` not among the labelled shots (labels unused)."""
    return np.setdiff1d(np.asarray(train_idx, dtype=np.int64), shots_idx, assume_unique=True)


def save_split(path: str | Path, split: Split) -> None:
    """Write ``split`` as ``split-{k}.npz`` (train, val, test, n_rows, seed), atomically."""
    with atomic_path(path, suffix=".npz.tmp") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh, train=split.train, val=split.val, test=split.test,
                n_rows=np.int64(split.n_rows), seed=np.int64(split.seed),
            )


def load_split(path: str | Path, n_rows: int | None = None) -> Split:
    """Read a split file and check it; ``n_rows`` (if given) must match the data's."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "split file not found (write it with `rbda split`)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"train", "val", "test", "n_rows", "seed"} - set(npz.files)
            if missing:
                raise InputFileError(path, f"a split file with arrays train, val, test, n_rows, seed; missing {sorted(missing)}")
            arrays = {p: np.asarray(npz[p]) for p in PARTS}
            stored_rows = int(npz["n_rows"])
            stored_seed = int(npz["seed"])
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"a NumPy .npz split file ({exc})") from exc
    for part, idx in arrays.items():
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise InputFileError(path, "1-d integer row indices", where=part)
        if idx.size and (idx.min() < 0 or idx.max() >= stored_rows):
            raise InputFileError(path, f"row indices in [0, {stored_rows})", where=part)
    total = sum(a.size for a in arrays.values())
    if np.unique(np.concatenate(list(arrays.values()))).size != total:
        raise InputFileError(path, "disjoint train/val/test parts (a row appears in two parts)")
    if n_rows is not None and stored_rows != n_rows:
        raise InputFileError(
            path,
            f"a split of a survey with {n_rows} rows, but it was made for {stored_rows} rows "
            "(the data file changed since the split was written; re-run `rbda split`)",
        )
    return Split(**{p: a.astype(np.int64) for p, a in arrays.items()}, n_rows=stored_rows, seed=stored_seed)
