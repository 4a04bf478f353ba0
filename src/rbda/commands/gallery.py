"""`rbda gallery`: the top- and bottom-scored alerts of an `rbda predict` output, as stamps."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "gallery",
        help="draw the highest- and lowest-scored alerts of an `rbda predict` output",
        description=(
            "Read an `rbda predict` Parquet output and the inputs it scored (the same --input, "
            "--survey and --format), and draw the (template, science, difference) stamps of the "
            "--per-end alerts with the highest and the lowest p_real, preprocessed as the model saw them."
        ),
    )
    p.add_argument("--scores", required=True, type=Path, metavar="SCORES.parquet")
    p.add_argument("--input", nargs="+", required=True, type=Path, metavar="PATH",
                   help="the inputs `rbda predict` scored")
    p.add_argument("--survey", default=None, help="raw survey files: the survey (as rbda predict --survey)")
    p.add_argument("--format", default=None, help="raw survey files: the layout (as rbda predict --format)")
    p.add_argument("--per-end", type=int, default=None,
                   help="alerts per end (default: rbda.results.gallery.PER_END, 6)")
    p.add_argument("--output", required=True, type=Path, metavar="GALLERY.png")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli)."""
    return {"outputs": {"--output": args.output}, "inputs": {"--scores": [args.scores], "--input": args.input}}


def run(args: argparse.Namespace) -> int:
    from rbda.atomic import check_output_path
    from rbda.errors import SettingError
    from rbda.results.gallery import PER_END, save_png, scores_gallery

    if args.output.suffix != ".png":
        raise SettingError("--output", "a .png file", str(args.output))
    if args.per_end is None:
        args.per_end = PER_END
    if args.per_end < 1:
        raise SettingError("--per-end", "a positive integer", args.per_end)
    check_output_path(args.output, "--output", [args.scores, *args.input])
    save_png(scores_gallery(args.scores, args.input, args.per_end, args.survey, args.format), args.output)
    log.info("wrote %s", args.output)
    return 0
