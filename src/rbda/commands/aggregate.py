"""`rbda aggregate`: tables, statistics, figures and the HTML report from all run files."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "aggregate",
        help="tables, significance tests, figures and report.html from the run JSONs",
        description=(
            "Read every run JSON named in --runs-list (baseline, finetune, selected MME and "
            "per-lambda MME runs) and write tables/, stats/, figures/ and report.html under "
            "--out-dir. The file names depend only on the configured surveys "
            "(see rbda.results.outputs.expected_outputs)."
        ),
    )
    p.add_argument("--runs-list", required=True, metavar="LIST.txt",
                   help="text file with one run JSON path per line")
    p.add_argument("--config", required=True, metavar="CONFIG.json",
                   help="the workflow's effective configuration (JSON) with 'study.surveys' "
                        "(or a top-level 'surveys'); shown in full in the report")
    p.add_argument("--out-dir", required=True, metavar="DIR")
    p.add_argument("--stamp-classifier", default=None, metavar="DIR",
                   help="the outputs of rbda stamp-classifier (summary.csv, tests.csv, confusion.png): "
                        "their section in report.html")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Inputs and the output folder for `rbda.atomic.check_outputs` (run before the work by rbda.cli); the
    run files it lists live in the results folder it writes to, under other names."""
    return {"outputs": {}, "inputs": {"--runs-list": [args.runs_list], "--config": [args.config]},
            "folders": {"--out-dir": args.out_dir}}


def run(args: argparse.Namespace) -> int:
    from rbda.results.aggregate import aggregate

    aggregate(args.runs_list, args.config, args.out_dir, stamp_classifier=args.stamp_classifier)
    return 0
