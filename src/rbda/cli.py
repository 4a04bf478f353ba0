"""The ``rbda`` command line.

Each subcommand lives in ``rbda.commands.<name>`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``. Command modules import
only light modules at import time (no torch), so that ``rbda --help`` and the
data commands start fast; heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rbda import __version__
from rbda.errors import RbdaError

COMMANDS = (
    "synth",
    "preprocess",
    "download",
    "split",
    "train",
    "evaluate",
    "predict",
    "choose_lambda",
    "select_lambda",
    "select_model",
    "gallery",
    "aggregate",
    "stamp_classifier",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rbda",
        description="Cross-survey domain adaptation for real/bogus alert classification.",
    )
    parser.add_argument("--version", action="version", version=f"rbda {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"rbda.commands.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args._run(args) or 0)
    except RbdaError as exc:
        print(f"rbda {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
