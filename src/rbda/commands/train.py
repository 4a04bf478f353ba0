"""`rbda train` (placeholder until its owner implements it)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return sub.add_parser("train", help="(not implemented yet)")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("rbda train")
