"""How the workflow makes jobs of a lambda method's runs (config ``lambda_jobs``).

``grid`` (the default): one job per (method, pair, shots, split) trains the lambdas as members
(``rbda train --lambda A B ...``, :func:`rbda.learn.train.train_members`): one process, the surveys
loaded once, one batch stream. ``per_lambda``: one job per run, as before. Both write the same
files with the same numbers (tests/test_members.py), so the choice changes only the jobs.

A rule's outputs are fixed patterns, so which lambdas a grid job trains is decided when the
workflow is read, from the run files already there (:func:`split_grid`): the lambdas missing in
some (pair, shots, split) are the grid members of ``train_METHOD`` (all lambdas in a fresh study);
the lambdas trained in every group are the members of ``train_METHOD_rerun``, whose jobs run only
when Snakemake reruns finished runs (a code or setting change). Adding a lambda to a finished
study therefore trains only the new lambda.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

#: Values of the config key ``lambda_jobs``.
LAMBDA_JOBS = ("grid", "per_lambda")


def split_grid(outputs_by_lambda: Mapping[str, Iterable[str | Path]]) -> tuple[list[str], list[str]]:
    """(lambdas with an output missing somewhere, lambdas with every output present), in the
    mapping's order; when no output is missing, every lambda is in the first list (a rerun of
    finished runs retrains whole grids)."""
    missing, complete = [], []
    for label, outputs in outputs_by_lambda.items():
        (complete if all(Path(p).exists() for p in outputs) else missing).append(label)
    return (missing, complete) if missing else (complete, [])


def grid_runtime(minutes_per_run: int, members: int, attempt: int) -> int:
    """A grid job's time limit: the configured minutes of one run, times its members, times the attempt."""
    return minutes_per_run * members * attempt
