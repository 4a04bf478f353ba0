"""`rbda select-lambda`: choose MME's lambda on target validation BACC."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "select-lambda",
        help="pick the MME run with the best target validation BACC among lambdas",
        description=(
            "Given the MME runs of one (source, target, shots, split), one per lambda, write "
            "the chosen run's JSON plus a 'selection' object. Rule per_split: highest "
            "validation.best_bacc among --runs (ties: the smaller lambda). Rule first_split "
            "(thesis): choose on --reference-runs (the first split's runs, same pair and "
            "shots) and take the run of --runs with that lambda."
        ),
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN.json",
                   help="MME run JSONs of one pair, shots and split, one per lambda")
    p.add_argument("--rule", choices=("per_split", "first_split"), default="per_split")
    p.add_argument("--reference-runs", nargs="+", default=None, metavar="RUN.json",
                   help="with --rule first_split: the reference split's MME runs")
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
    log.info("%s: lambda %g chosen by rule %s among %d candidates",
             args.output, sel["chosen_lambda"], sel["rule"], len(sel["candidates"]))
    return 0
