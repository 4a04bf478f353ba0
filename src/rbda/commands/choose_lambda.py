"""`rbda choose-lambda`: one lambda for a pair (rules per_pair, first_split), chosen on its runs once."""

from __future__ import annotations

import argparse
import logging

from rbda.commands.select_lambda import TIES
from rbda.study import DEFAULT_SELECTION_RULE, PAIR_SELECTION_RULES

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "choose-lambda",
        help="choose one lambda for a pair on the mean target validation BACC of its runs",
        description=(
            "Choose the lambda of a lambda method for one (source, target) on --runs: per_pair "
            "(default): every run of the pair and method, all shots and splits; first_split: the "
            "first split's runs, all shots. The lambda with the best mean validation.best_bacc "
            "wins. " + TIES + " Writes a choice JSON for rbda select-lambda --choice."
        ),
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN.json",
                   help="the runs the choice is made on (see the rule)")
    p.add_argument("--rule", choices=PAIR_SELECTION_RULES, default=DEFAULT_SELECTION_RULE)
    p.add_argument("--output", required=True, metavar="CHOICE.json")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli)."""
    return {"outputs": {"--output": args.output}, "inputs": {"--runs": args.runs}}


def run(args: argparse.Namespace) -> int:
    from rbda.atomic import write_json
    from rbda.results.runs import load_runs
    from rbda.results.selection import choose_lambda

    choice = choose_lambda(load_runs(args.runs), rule=args.rule)
    write_json(args.output, choice)
    log.info("%s: %s %s-to-%s: lambda %g chosen by rule %s on %d runs (tie broken by: %s)", args.output,
             choice["method"], choice["source"], choice["target"], choice["chosen_lambda"], choice["rule"],
             len(args.runs), choice["tie_broken_by"])
    return 0
