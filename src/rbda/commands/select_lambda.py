"""`rbda select-lambda`: choose MME's lambda on target validation BACC."""

from __future__ import annotations

import argparse
import logging

from rbda.study import DEFAULT_SELECTION_RULE, SELECTION_RULES

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "select-lambda",
        help="pick the MME run with the best target validation BACC among lambdas",
        description=(
            "Given the MME runs of one (source, target, shots, split), one per lambda, write "
            "the chosen run's JSON plus a 'selection' object. Rule per_pair (default): the "
            "lambda with the best mean validation.best_bacc over --reference-runs, every MME "
            "run of the pair (all shots and splits). Rule per_split: best validation.best_bacc "
            "among --runs. Rule first_split (thesis): as per_pair, on --reference-runs = the "
            "first split's MME runs of the pair (all shots). Ties: the mean validation BACC "
            "of the last epochs up to the best, then the smaller lambda."
        ),
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN.json",
                   help="MME run JSONs of one pair, shots and split, one per lambda")
    p.add_argument("--rule", choices=SELECTION_RULES, default=DEFAULT_SELECTION_RULE)
    p.add_argument("--reference-runs", nargs="+", default=None, metavar="RUN.json",
                   help="the runs the choice is made on: per_pair: every MME run of the pair; "
                        "first_split: the first split's MME runs of the pair; per_split: none")
    p.add_argument("--output", required=True, metavar="SELECTED.json")
    return p


def run(args: argparse.Namespace) -> int:
    from rbda.atomic import write_json
    from rbda.results.runs import load_runs
    from rbda.results.selection import select_lambda

    runs = load_runs(args.runs)
    reference = load_runs(args.reference_runs) if args.reference_runs else None
    selected = select_lambda(runs, rule=args.rule, reference_runs=reference)
    write_json(args.output, selected)
    sel = selected["selection"]
    log.info("%s: lambda %g chosen by rule %s among %d candidates (tie broken by: %s)",
             args.output, sel["chosen_lambda"], sel["rule"], len(sel["candidates"]), sel["tie_broken_by"])
    return 0
