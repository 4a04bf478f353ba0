"""Choosing MME's lambda on target validation BACC (``rbda select-lambda``).

Rules
-----
``per_split``
    Among the MME runs of one (source, target, shots, split) - one per lambda -
    take the run with the highest target validation BACC
    (``validation.best_bacc``). Ties go to the **smaller** lambda (the weaker
    entropy term), so the choice never depends on file order.
``first_split`` (the thesis)
    The lambda is chosen the same way, but on the runs of a reference split
    (``--reference-runs``, normally split 0) of the same pair and shots; the
    current split's run with that lambda is taken.

The output is the chosen run's JSON plus a ``selection`` object: ``rule``,
``chosen_lambda``, ``candidates`` (lambda and val_bacc of each run the choice
was made on) and, for ``first_split``, ``reference_split``.
"""

from __future__ import annotations

import copy
from typing import Any

from rbda.errors import InputFileError, SettingError
from rbda.results.runs import Run
from rbda.study import LAMBDA_METHODS, SELECTION_RULES


def _check_candidate_group(runs: list[Run], what: str) -> None:
    """All runs: unselected MME, one (source, target, shots, split), distinct lambdas."""
    if not runs:
        raise SettingError(what, "at least one MME run JSON")
    first = runs[0]
    group = (first.source, first.target, first.shots, first.split)
    lambdas_seen: dict[str, Run] = {}
    for run in runs:
        if run.method not in LAMBDA_METHODS or run.is_selected or run.method != first.method:
            raise InputFileError(run.path, f"runs of one lambda method ({', '.join(LAMBDA_METHODS)}) without a "
                                           f"selection ({what}), all {first.kind}; got a {run.kind} run")
        if (run.source, run.target, run.shots, run.split) != group:
            raise InputFileError(
                run.path,
                f"the same source, target, shots and split as {first.path} "
                f"({first.describe()}) in {what}; got {run.describe()}",
            )
        other = lambdas_seen.get(run.lambda_name)
        if other is not None:
            raise InputFileError(run.path, f"one run per lambda in {what}, but {other.path} has "
                                           f"lambda {run.lambda_name} too")
        lambdas_seen[run.lambda_name] = run


def best_by_validation(runs: list[Run]) -> Run:
    """The run with the highest validation BACC; ties go to the smaller lambda."""
    return min(runs, key=lambda run: (-run.val_bacc, run.lambda_))


def _candidates(runs: list[Run]) -> list[dict[str, float]]:
    return [{"lambda": run.lambda_, "val_bacc": run.val_bacc}
            for run in sorted(runs, key=lambda r: r.lambda_)]


def select_lambda(runs: list[Run], rule: str = "per_split",
                  reference_runs: list[Run] | None = None) -> dict[str, Any]:
    """The selected run's JSON (a new dict) with its ``selection`` object."""
    if rule not in SELECTION_RULES:
        raise SettingError("--rule", " or ".join(SELECTION_RULES), rule)
    _check_candidate_group(runs, "--runs")
    if rule == "per_split":
        if reference_runs:
            raise SettingError("--reference-runs", "no reference runs with rule per_split", "given")
        chosen = best_by_validation(runs)
        selection = {"rule": rule, "chosen_lambda": chosen.lambda_, "candidates": _candidates(runs)}
    else:
        chosen, selection = _select_first_split(runs, reference_runs or [])
    result = copy.deepcopy(chosen.data)
    result["selection"] = selection
    return result


def _select_first_split(runs: list[Run], reference_runs: list[Run]) -> tuple[Run, dict[str, Any]]:
    if not reference_runs:
        raise SettingError("--reference-runs", "the reference split's MME runs with rule first_split")
    _check_candidate_group(reference_runs, "--reference-runs")
    current, reference = runs[0], reference_runs[0]
    if (reference.source, reference.target, reference.shots) != (current.source, current.target, current.shots):
        raise InputFileError(
            reference.path,
            f"a reference run of the same source, target and shots as {current.path} "
            f"({current.describe()}); got {reference.describe()}",
        )
    reference_choice = best_by_validation(reference_runs)
    by_lambda = {run.lambda_name: run for run in runs}
    chosen = by_lambda.get(reference_choice.lambda_name)
    if chosen is None:
        raise SettingError(
            "--runs",
            f"a run with lambda {reference_choice.lambda_name}, the lambda chosen on split "
            f"{reference.split}",
            sorted(by_lambda),
        )
    selection = {
        "rule": "first_split",
        "chosen_lambda": chosen.lambda_,
        "reference_split": reference.split,
        "candidates": _candidates(reference_runs),
    }
    return chosen, selection

