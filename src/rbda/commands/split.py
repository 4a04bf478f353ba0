"""`rbda split`: write one stratified 80/10/10 split of a preprocessed survey."""

from __future__ import annotations

import argparse
from pathlib import Path

from rbda import SURVEYS


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "split", help="write a stratified 80/10/10 train/val/test split (split-{k}.npz)",
        description="Stratified by label; a pure function of (seed, survey, split).",
    )
    p.add_argument("--data", type=Path, required=True, help="preprocessed survey (Parquet)")
    p.add_argument("--survey", required=True, choices=SURVEYS)
    p.add_argument("--split", type=int, required=True, help="split number k")
    p.add_argument("--seed", type=int, required=True, help="the study's base seed")
    p.add_argument("--output", type=Path, required=True, help="split file (.npz) to write")
    return p


def read_labels(path: Path, survey: str):
    """The label column of a preprocessed survey, read alone (no stamps)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rbda.errors import InputFileError

    if not path.is_file():
        raise InputFileError(path, f"preprocessed survey file for {survey!r} not found (run `rbda preprocess`)")
    try:
        table = pq.read_table(path, columns=["label"])
        stored = (pq.read_schema(path).metadata or {}).get(b"rbda.survey")
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise InputFileError(path, f"a Parquet survey file with an int8 'label' column ({exc})") from None
    if stored is not None and stored.decode() != survey:
        raise InputFileError(path, f"the survey {survey!r}, but the file holds survey {stored.decode()!r}")
    column = table.column("label")
    if column.null_count:
        raise InputFileError(path, "labels without missing values", where="column 'label'")
    return np.asarray(column.to_numpy(), dtype=np.int8)


def run(args: argparse.Namespace) -> int:
    import logging

    from rbda.splits import make_split, save_split

    labels = read_labels(args.data, args.survey)
    split = make_split(labels, args.survey, args.split, args.seed)
    save_split(args.output, split)
    logging.getLogger("rbda.split").info(
        "%s split %d: train %d, val %d, test %d rows -> %s", args.survey, args.split,
        split.train.size, split.val.size, split.test.size, args.output)
    return 0
