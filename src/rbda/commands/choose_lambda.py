"""`rbda choose-lambda`: a pair's lambdas (rules per_pair, first_split), one per split, chosen on its runs
once, never on an item of the split's own target test part."""

from __future__ import annotations

import argparse
import logging
import re

from rbda.commands.select_lambda import TIES
from rbda.study import DEFAULT_SELECTION_RULE, PAIR_SELECTION_RULES

log = logging.getLogger(__name__)
SPLIT_ARG = re.compile(r"(\d+)=(.+)")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "choose-lambda",
        help="choose a pair's lambda per split on the mean target validation BACC of its runs",
        description=(
            "Choose the lambda of a lambda method for one (source, target), once per split, on --runs "
            "(every run of the pair and method, all shots and splits): per_pair (default): the runs of "
            "every split whose validation items hold no item of this split's target test part; "
            "first_split: the first split's runs when they are clean for this split, else its own. The "
            "lambda with the best mean validation.best_bacc wins. " + TIES + " The validation items are "
            "drawn as training draws them (the runs' seed and hyperparameters.val_shots) from "
            "--target-data's labels and the --target-split files. Writes a choice JSON for "
            "rbda select-lambda --choice."
        ),
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN.json",
                   help="every run of the pair and method")
    p.add_argument("--target-data", required=True, metavar="SURVEY.parquet",
                   help="the target survey's preprocessed file (its labels are read)")
    p.add_argument("--target-split", nargs="+", required=True, metavar="K=SPLIT.npz",
                   help="the target's split file of every split k of --runs")
    p.add_argument("--rule", choices=PAIR_SELECTION_RULES, default=DEFAULT_SELECTION_RULE)
    p.add_argument("--output", required=True, metavar="CHOICE.json")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli)."""
    return {"outputs": {"--output": args.output}, "inputs": {"--runs": args.runs, "--target-data": [args.target_data],
                                                     "--target-split": list(_split_files(args.target_split).values())}}


def _split_files(values: list[str]) -> dict[int, str]:
    from rbda.errors import SettingError

    files = {}
    for value in values:
        match = SPLIT_ARG.fullmatch(value)
        if match is None:
            raise SettingError("--target-split", "K=PATH (a split number, '=', its split file)", value)
        files[int(match.group(1))] = match.group(2)
    return files


def _one(runs, what: str, get):
    """The value ``get(run)`` all ``runs`` share; an error naming a run that differs."""
    from rbda.errors import InputFileError

    first = get(runs[0])
    for run in runs:
        if get(run) != first or first is None:
            raise InputFileError(run.path, f"the {what} of every run of the pair ({first!r} in {runs[0].path}); "
                                           f"got {get(run)!r}")
    return first


def run(args: argparse.Namespace) -> int:
    from rbda.atomic import write_json
    from rbda.ingest.splits import load_split
    from rbda.ingest.store import read_labels_and_classes
    from rbda.results.runs import load_runs
    from rbda.results.selection import choose_lambda, clean_reference_splits, target_validation_items

    runs = load_runs(args.runs)
    labels, _ = read_labels_and_classes(args.target_data)
    splits = {k: load_split(path, n_rows=len(labels)) for k, path in _split_files(args.target_split).items()}
    seed = _one(runs, "seed", lambda r: r.data.get("seed"))
    val_shots = _one(runs, "hyperparameters.val_shots", lambda r: (r.data.get("hyperparameters") or {}).get("val_shots"))
    target = runs[0].target
    items = target_validation_items(labels, splits, int(val_shots), int(seed), target)
    clean = clean_reference_splits(items, {k: split.test for k, split in splits.items()})
    choice = choose_lambda(runs, clean, rule=args.rule)
    write_json(args.output, choice)
    for k, facts in choice["by_split"].items():
        log.info("%s: %s %s-to-%s split %s: lambda %g chosen by rule %s on splits %s (tie broken by: %s)",
                 args.output, choice["method"], choice["source"], choice["target"], k, facts["chosen_lambda"],
                 choice["rule"], facts["reference_splits"], facts["tie_broken_by"])
    return 0
