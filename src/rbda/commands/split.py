"""`rbda split`: write one stratified 80/10/10 split of a preprocessed survey."""

from __future__ import annotations

import argparse
from pathlib import Path

from rbda.study import MULTICLASS_TEST_PER_CLASS, MULTICLASS_VAL_PER_CLASS, TASKS
from rbda.surveys import survey_argument


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "split", help="write a stratified 80/10/10 train/val/test split (split-{k}.npz)",
        description="Stratified by label; a pure function of (seed, survey, split).",
    )
    p.add_argument("--data", type=Path, required=True, help="preprocessed survey (Parquet)")
    p.add_argument("--survey", required=True, type=survey_argument)
    p.add_argument("--split", type=int, required=True, help="split number k")
    p.add_argument("--seed", type=int, required=True, help="the study's base seed")
    p.add_argument("--output", type=Path, required=True, help="split file (.npz) to write")
    p.add_argument("--task", choices=TASKS, default=TASKS[0],
                   help="binary: stratified 80/10/10 by real/bogus; multiclass: balanced validation and "
                        "test parts per original class (rbda.ingest.multiclass), the rest to train")
    p.add_argument("--val-per-class", type=int, default=MULTICLASS_VAL_PER_CLASS,
                   help=f"multiclass: validation items per class (default {MULTICLASS_VAL_PER_CLASS})")
    p.add_argument("--test-per-class", type=int, default=MULTICLASS_TEST_PER_CLASS,
                   help=f"multiclass: test items per class (default {MULTICLASS_TEST_PER_CLASS})")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli)."""
    return {"outputs": {"--output": args.output}, "inputs": {"--data": [args.data]}}


def run(args: argparse.Namespace) -> int:
    import logging

    from rbda.atomic import check_output_path
    from rbda.ingest.splits import make_split, save_split
    from rbda.ingest.store import read_survey_arrays

    check_output_path(args.output, "--output", inputs=[args.data])
    if args.task == "multiclass":
        from rbda.ingest.multiclass import balanced_split, read_class_indices

        labels = read_class_indices(args.data, args.survey)
        split = balanced_split(labels, args.survey, args.split, args.seed, args.val_per_class, args.test_per_class)
    else:
        _, labels = read_survey_arrays(args.data, args.survey, stamps=False)
        split = make_split(labels, args.survey, args.split, args.seed)
    save_split(args.output, split)
    logging.getLogger("rbda.split").info(
        "%s split %d: train %d, val %d, test %d rows -> %s", args.survey, args.split,
        split.train.size, split.val.size, split.test.size, args.output)
    return 0
