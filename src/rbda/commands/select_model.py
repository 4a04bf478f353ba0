"""`rbda select-model`: the model file of a selected lambda-method run (a copy of the chosen run's)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: Facts a model file and its run JSON must agree on (rbda.learn.models.save_model_file's ``facts``).
MATCHED_FACTS = ("method", "source", "target", "split", "shots")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "select-model",
        help="copy the model of the run `rbda select-lambda` chose",
        description=(
            "Given a selected run JSON (`rbda select-lambda --output`) and the model files of its "
            "group's runs (one per lambda, `rbda train --model`), copy the one whose recorded facts "
            "(method, source, target, split, shots, lambda) are the chosen run's to --output."
        ),
    )
    p.add_argument("--selected", required=True, type=Path, metavar="SELECTED.json")
    p.add_argument("--models", nargs="+", required=True, type=Path, metavar="MODEL.pt",
                   help="model files of the group's runs (any order)")
    p.add_argument("--output", required=True, type=Path, metavar="SELECTED.pt")
    return p


def chosen_model(selected: Path, models: list[Path]) -> Path:
    """The one file of ``models`` whose facts are the selected run's; an error naming what is wrong otherwise."""
    from rbda.errors import InputFileError
    from rbda.learn.models import load_model_file
    from rbda.results.runs import load_run
    from rbda.study import format_lambda

    run = load_run(selected).data
    if "selection" not in run:
        raise InputFileError(selected, "a selected run JSON (written by `rbda select-lambda`)", "selection")
    want = {k: run[k] for k in MATCHED_FACTS} | {"lambda": format_lambda(run["selection"]["chosen_lambda"])}
    matches = []
    for path in models:
        facts = load_model_file(path)["facts"]
        got = {k: facts.get(k) for k in MATCHED_FACTS}
        got["lambda"] = format_lambda(facts["lambda"]) if facts.get("lambda") is not None else None
        if got == want:
            matches.append(path)
    if len(matches) != 1:
        listed = ", ".join(str(p) for p in models)
        raise InputFileError(selected, f"exactly one model file of the chosen run ({want}) among --models "
                                       f"({listed}); found {len(matches)}")
    return matches[0]


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli)."""
    return {"outputs": {"--output": args.output}, "inputs": {"--selected": [args.selected], "--models": args.models}}


def run(args: argparse.Namespace) -> int:
    import shutil

    from rbda.atomic import atomic_path, check_output_path

    check_output_path(args.output, "--output", [args.selected, *args.models])
    source = chosen_model(args.selected, args.models)
    with atomic_path(args.output, suffix=".pt.tmp") as tmp:
        shutil.copyfile(source, tmp)
    log.info("%s: copy of %s (the chosen run's model)", args.output, source)
    return 0
