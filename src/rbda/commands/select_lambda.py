"""`rbda select-lambda`: the run of the chosen lambda of one (pair, shots, split)."""

from __future__ import annotations

import argparse
import logging

from rbda.study import DEFAULT_SELECTION_RULE, SELECTION_RULES

log = logging.getLogger(__name__)

#: How ties are broken (rbda.results.selection), for the help of both commands.
TIES = "Ties: the mean validation BACC of the last epochs up to the best, then the smaller lambda."


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "select-lambda",
        help="write the run of the chosen lambda of one (pair, shots, split), with the selection facts",
        description=(
            "Given the runs of a lambda method of one (source, target, shots, split), one per lambda, "
            "write the chosen run's JSON plus a 'selection' object. Rules per_pair (default) and "
            "first_split: the lambda of --choice, the pair's choice made by rbda choose-lambda. Rule "
            "per_split (the paper): the best validation.best_bacc among --runs. " + TIES
        ),
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN.json",
                   help="runs of one lambda method, one pair, shots and split, one per lambda")
    p.add_argument("--rule", choices=SELECTION_RULES, default=DEFAULT_SELECTION_RULE)
    p.add_argument("--choice", default=None, metavar="CHOICE.json",
                   help="the pair's lambda choice (rbda choose-lambda); per_pair and first_split only")
    p.add_argument("--output", required=True, metavar="SELECTED.json")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli)."""
    return {"outputs": {"--output": args.output}, "inputs": {"--runs": args.runs, "--choice": [args.choice]}}


def run(args: argparse.Namespace) -> int:
    from rbda.atomic import write_json
    from rbda.results.runs import load_runs
    from rbda.results.selection import read_choice, select_lambda

    runs = load_runs(args.runs)
    choice = read_choice(args.choice) if args.choice else None
    selected = select_lambda(runs, rule=args.rule, choice=choice, choice_path=args.choice or "--choice")
    write_json(args.output, selected)
    sel = selected["selection"]
    log.info("%s: lambda %g chosen by rule %s among %d candidates (tie broken by: %s)",
             args.output, sel["chosen_lambda"], sel["rule"], len(sel["candidates"]), sel["tie_broken_by"])
    return 0
