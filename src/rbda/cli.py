"""The ``rbda`` command line.

Each subcommand lives in ``rbda.commands.<name>`` and exposes
``add_parser(subparsers)``, ``io_paths(args)`` (the files it writes and reads:
:func:`rbda.atomic.check_outputs` checks them before ``run``, so no command
overwrites one of its inputs) and ``run(args) -> int``. Command modules import
only light modules at import time (no torch), so that ``rbda --help`` and the
data commands start fast; heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import logging
import os
import re
import sys
from pathlib import Path

from rbda import __version__
from rbda.atomic import check_outputs
from rbda.errors import RbdaError

#: OS errors of a full or read-only disk: a user's situation, reported without a traceback.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}

COMMANDS = (
    "synth",
    "preprocess",
    "download",
    "split",
    "train",
    "evaluate",
    "predict",
    "packets",
    "choose_lambda",
    "select_lambda",
    "select_model",
    "gallery",
    "aggregate",
    "stamp_classifier",
)


def is_write_error(exc: OSError) -> bool:
    """A full disk, quota or read-only file system (pyarrow's errors give the errno only in the text)."""
    found = re.search(r"\[Errno (\d+)\]", str(exc))
    return exc.errno in WRITE_ERRNOS or (found is not None and int(found.group(1)) in WRITE_ERRNOS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rbda",
        description="Cross-survey domain adaptation for real/bogus alert classification.",
    )
    parser.add_argument("--version", action="version", version=f"rbda {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--surveys", action=SurveysFile, metavar="SURVEYS.json",
                        help="a file declaring surveys beyond the study's four (docs/surveys.md); sets RBDA_SURVEYS "
                             "for this command")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"rbda.commands.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run, _io_paths=module.io_paths)
    return parser


class SurveysFile(argparse.Action):
    """``rbda --surveys FILE``: the survey declarations of FILE join the shipped ones (rbda.surveys),
    set when parsed, so that the command's --survey options accept them."""

    def __call__(self, parser, namespace, values, option_string=None):
        from rbda.surveys import SURVEYS_ENV

        os.environ[SURVEYS_ENV] = str(Path(values).resolve())
        setattr(namespace, self.dest, values)


def main(argv: list[str] | None = None) -> int:
    from rbda.surveys import SURVEYS_ENV

    declared_before = os.environ.get(SURVEYS_ENV)
    try:
        return _main(argv)
    finally:  # --surveys holds for this command only (main is also called in-process, by tests)
        if declared_before is None:
            os.environ.pop(SURVEYS_ENV, None)
        else:
            os.environ[SURVEYS_ENV] = declared_before


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        check_outputs(**args._io_paths(args))
        return int(args._run(args) or 0)
    except RbdaError as exc:
        print(f"rbda {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rbda predict --describe M.pt | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        if not is_write_error(exc):
            raise
        print(f"rbda {args.command}: error: cannot write {exc.filename or 'an output'}: {exc.strerror}; "
              "nothing partial is left (outputs appear only once complete)", file=sys.stderr)
        return 2


def run() -> None:
    """The ``rbda`` executable: :func:`main`, then the process exits with its code.

    Before the interpreter's teardown, every object is frozen out of the garbage collector
    (:func:`gc.freeze`): its collections at exit would otherwise scan the few hundred thousand objects
    that importing torch leaves, about 0.4 s of a command that scores one packet
    (docs/benchmarks.md). Every output is written and closed by then (each appears only once
    complete); the standard streams are flushed, atexit handlers run and objects nothing refers to
    are freed as usual. What the freeze skips: collecting garbage held in reference cycles, whose
    finalizers (``__del__``) then do not run; rbda leaves no open output to such a finalizer."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
