"""`rbda stamp-classifier`: means ± SD and Welch/Holm tests of repeated multiclass runs per variant."""

from __future__ import annotations

import argparse
from pathlib import Path

from rbda.errors import SettingError
from rbda.study import SURVEY_CLASSES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "stamp-classifier", help="summarise repeated multiclass runs of stamp-classifier variants",
        description="Test-part metrics of `rbda train --task multiclass` runs: means ± SD per variant, "
                    "one-sided Welch tests between variants with Holm correction, beside the published "
                    "EarlySN/TwoAlert figures (rbda.results.stamp_classifier).",
    )
    p.add_argument("--survey", required=True, choices=sorted(SURVEY_CLASSES))
    p.add_argument("--variant", action="append", default=[], required=True,
                   help="variant name, in comparison order (later variants are tested as better); repeat")
    p.add_argument("--run", action="append", default=[], metavar="VARIANT=RUN.json",
                   help="a run JSON of a variant; repeat")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for summary.csv, tests.csv, report.md")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Inputs and the output folder for `rbda.atomic.check_outputs` (run before the work by rbda.cli)."""
    return {"outputs": {}, "inputs": {"--run": [t.partition("=")[2] or None for t in args.run]},
            "folders": {"--out-dir": args.out_dir}}


def run(args: argparse.Namespace) -> int:
    import logging

    from rbda.results.stamp_classifier import write_outputs

    runs = []
    for text in args.run:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise SettingError("--run", "VARIANT=RUN.json", text)
        runs.append((name, Path(path)))
    if len(set(args.variant)) != len(args.variant) or len(args.variant) < 2:
        raise SettingError("--variant", "at least two distinct variant names", args.variant)
    per_variant = {v: sum(1 for name, _ in runs if name == v) for v in args.variant}
    paths = write_outputs(runs, args.variant, args.survey, args.out_dir, {"runs": max(per_variant.values(), default=0)})
    logging.getLogger("rbda.stamp_classifier").info("%s -> %s", per_variant, ", ".join(map(str, paths.values())))
    return 0
