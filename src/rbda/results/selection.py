"""Choosing MME's lambda on target validation BACC (``rbda select-lambda``).

Rules (docs/method.md section 7)
------------------------------------------
``per_pair`` (default; the thesis's intent)
    One lambda per (source, target) and split: the lambda with the highest mean
    target validation BACC (``validation.best_bacc``) over all shot counts and
    the splits whose validation items hold no item of that split's target test
    part (:func:`clean_reference_splits`; the splits resample one pool, so a
    plain pool over every split would let the lambda of split k see some of
    split k's test items).
``per_split`` (the paper)
    One lambda per (source, target, shots, split), on that group's runs only.
``first_split`` (the thesis's tuning)
    As ``per_pair`` on the first split's runs only (all shot counts), for every
    split for which the first split is clean; a split for which it is not gets
    the choice made on its own runs.

The two per-pair rules are made in two steps, so that a workflow's selection
jobs do not each read every run of the pair: :func:`choose_lambda`
(``rbda choose-lambda``) makes the pair's choices once, from every run of the
pair and the target's split files and labels, into a *choice* document
(schema :data:`LAMBDA_CHOICE_SCHEMA`, one choice per split under ``by_split``);
:func:`select_lambda` (``rbda select-lambda --choice``) then writes, for each
(pair, shots, split), the chosen lambda's run (``--runs``, one per lambda) with
its split's choice. ``per_split`` needs no choice document.

Ties
----
Validation BACC on 20 items moves in steps of 0.05, so ties are common. They
are broken, in this order, by

1. ``recent_epochs``: the mean validation BACC over the last
   :data:`TIE_BREAK_EPOCHS` recorded epochs up to and including each run's best
   epoch (averaged over the candidate's runs) - a model that was good for
   several epochs beats one that touched the best value once;
2. ``smaller_lambda``: the smaller lambda (the weaker entropy term).

(Validation cross-entropy is not recorded in the run files, so it is not a
criterion.) The ``selection`` object records ``rule``, ``chosen_lambda``,
``candidates`` (per lambda: ``lambda``, ``val_bacc`` - the criterion -,
``recent_val_bacc`` - the tie-breaker -, ``n_runs``), ``tie`` (whether the
best criterion value was shared), ``tie_broken_by`` (``none``,
``recent_epochs`` or ``smaller_lambda``), ``reference_shots`` and
``reference_splits`` (the runs the choice was made on).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from rbda.errors import InputFileError, SettingError
from rbda.ingest.splits import Split, validation_shots
from rbda.results.runs import Run
from rbda.registry import LAMBDA_METHODS
from rbda.study import DEFAULT_SELECTION_RULE, LAMBDA_CHOICE_SCHEMA, PAIR_SELECTION_RULES, SELECTION_RULES, format_lambda

#: Epochs (up to and including the best) whose mean validation BACC breaks a tie.
TIE_BREAK_EPOCHS = 5
#: Criterion values closer than this are a tie (means of BACCs; rounding only).
TIE_TOLERANCE = 1e-9

TIE_NONE = "none"
TIE_RECENT = "recent_epochs"
TIE_SMALLER = "smaller_lambda"


def _check_lambda_runs(runs: list[Run], what: str) -> None:
    """Runs of one lambda method (rbda.study.LAMBDA_METHODS), none of them a selected run."""
    if not runs:
        raise SettingError(what, f"at least one run of a lambda method ({', '.join(LAMBDA_METHODS)})")
    first = runs[0]
    for run in runs:
        if run.method not in LAMBDA_METHODS or run.is_selected or run.method != first.method:
            raise InputFileError(run.path, f"runs of one lambda method ({', '.join(LAMBDA_METHODS)}) without a "
                                           f"selection ({what}), all {first.kind}; got a {run.kind} run")


def _check_candidate_group(runs: list[Run], what: str) -> None:
    """All runs: unselected MME, one (source, target, shots, split), distinct lambdas."""
    _check_lambda_runs(runs, what)
    first = runs[0]
    group = (first.source, first.target, first.shots, first.split)
    lambdas_seen: dict[str, Run] = {}
    for run in runs:
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


def _check_reference(reference: list[Run], current: Run, what: str) -> None:
    """Reference runs: MME runs of ``current``'s pair, each (shots, split) with every lambda once."""
    _check_lambda_runs(reference, what)
    groups: dict[tuple, dict[str, Run]] = {}
    for run in reference:
        if (run.source, run.target) != (current.source, current.target):
            raise InputFileError(run.path, f"an MME run of the pair of {current.path} ({current.describe()}) "
                                           f"in {what}; got {run.describe()}")
        by_lambda = groups.setdefault((run.shots, run.split), {})
        if run.lambda_name in by_lambda:
            raise InputFileError(run.path, f"one run per (shots, split, lambda) in {what}, but "
                                           f"{by_lambda[run.lambda_name].path} is the same run")
        by_lambda[run.lambda_name] = run
    lambdas = set().union(*groups.values())
    for (shots, split), by_lambda in sorted(groups.items()):
        missing = sorted(lambdas - set(by_lambda))
        if missing:
            raise SettingError(what, f"a run of every lambda for each (shots, split); shots {shots} split "
                                     f"{split} lacks lambda(s) {', '.join(missing)}", "incomplete")


def recent_val_bacc(run: Run, epochs: int = TIE_BREAK_EPOCHS) -> float:
    """Mean validation BACC over the last ``epochs`` recorded epochs up to and including the best.

    Falls back to ``validation.best_bacc`` when the run has no history.
    """
    validation = run.data["validation"]
    history = validation.get("history") or []
    best = validation.get("best_epoch")
    if best is not None:
        history = [h for h in history if h.get("epoch", math.inf) <= best]
    values = [float(h["val_bacc"]) for h in history[-epochs:] if "val_bacc" in h]
    return sum(values) / len(values) if values else run.val_bacc


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def choose(runs: list[Run]) -> tuple[float, dict[str, Any]]:
    """Pick a lambda from ``runs`` (any number of runs per lambda); return it and the selection facts."""
    by_lambda: dict[float, list[Run]] = {}
    for run in runs:
        by_lambda.setdefault(run.lambda_, []).append(run)
    candidates = [{"lambda": lam, "val_bacc": _mean([r.val_bacc for r in group]),
                   "recent_val_bacc": _mean([recent_val_bacc(r) for r in group]), "n_runs": len(group)}
                  for lam, group in sorted(by_lambda.items())]
    best = max(c["val_bacc"] for c in candidates)
    tied = [c for c in candidates if best - c["val_bacc"] <= TIE_TOLERANCE]
    broken_by = TIE_NONE
    if len(tied) > 1:
        best_recent = max(c["recent_val_bacc"] for c in tied)
        still = [c for c in tied if best_recent - c["recent_val_bacc"] <= TIE_TOLERANCE]
        broken_by = TIE_RECENT if len(still) == 1 else TIE_SMALLER
        tied = still
    chosen = min(tied, key=lambda c: c["lambda"])
    return chosen["lambda"], {"chosen_lambda": chosen["lambda"], "candidates": candidates,
                              "tie": broken_by != TIE_NONE, "tie_broken_by": broken_by,
                              "reference_shots": sorted({r.shots for r in runs}),
                              "reference_splits": sorted({r.split for r in runs})}


def best_by_validation(runs: list[Run]) -> Run:
    """The run of one group with the best validation BACC, ties broken as :func:`choose` does."""
    lam, _ = choose(runs)
    return next(r for r in runs if r.lambda_ == lam)


def clean_reference_splits(validation_items: dict[int, np.ndarray], test_parts: dict[int, np.ndarray]
                           ) -> dict[int, list[int]]:
    """Per split k: the splits j whose validation items (the labelled target items a run of split j
    validates on, :func:`rbda.ingest.splits.validation_shots`) hold no item of split k's target test
    part. Split k itself always qualifies (its validation and test parts are disjoint); the splits
    resample one pool, so another split's validation part holds about 10% of split k's test part
    and its validation items may too."""
    return {k: sorted(j for j, items in validation_items.items() if not np.intersect1d(items, test).size)
            for k, test in test_parts.items()}


def target_validation_items(labels: np.ndarray, splits: dict[int, Split], val_shots: int, seed: int,
                            survey: str) -> dict[int, np.ndarray]:
    """The validation items of every split's runs: ``val_shots`` per class of the split's validation
    part, drawn exactly as training draws them (same seed, survey and split)."""
    return {k: validation_shots(split.val, labels, val_shots, seed, survey, k) for k, split in splits.items()}


def _reference_for(rule: str, splits: list[int], clean: list[int], k: int) -> list[int]:
    """The splits split k's lambda is chosen on: the rule's (every split for per_pair, the first for
    first_split) among those clean for k; split k's own when none is."""
    wanted = splits if rule == "per_pair" else splits[:1]
    usable = [j for j in wanted if j in clean]
    return usable or [k]


def choose_lambda(reference_runs: list[Run], clean: dict[int, list[int]],
                  rule: str = DEFAULT_SELECTION_RULE) -> dict[str, Any]:
    """The pair's lambda choices (a :data:`LAMBDA_CHOICE_SCHEMA` document), one per split, none of
    which has seen an item of its split's target test part.

    ``reference_runs``: every run of the pair and method (all shots and splits), each (shots, split)
    with every lambda once. ``clean``: per split k, the splits whose validation items avoid split k's
    test part (:func:`clean_reference_splits`). Split k's lambda is chosen on the runs of
    ``per_pair``: every clean split; ``first_split``: the first split if it is clean for k; with no
    clean split of the rule, on split k's own runs. The document holds per split (``by_split``) the
    facts :func:`choose` returns; :func:`select_lambda` checks them.
    """
    if rule not in PAIR_SELECTION_RULES:
        raise SettingError("--rule", f"a rule that chooses one lambda per pair ({' or '.join(PAIR_SELECTION_RULES)}); "
                                     "per_split chooses per group and needs no choice", rule)
    if not reference_runs:
        raise SettingError("--runs", "every run of the pair and method (all shots and splits)")
    first = reference_runs[0]
    _check_reference(reference_runs, first, "--runs")
    splits = sorted({run.split for run in reference_runs})
    missing = sorted(set(splits) - set(clean))
    if missing:
        raise SettingError("--target-split", f"the split file of every split of --runs; missing split(s) "
                                             f"{', '.join(map(str, missing))}", "incomplete")
    by_split = {}
    for k in splits:
        reference = _reference_for(rule, splits, clean[k], k)
        _, facts = choose([run for run in reference_runs if run.split in reference])
        by_split[str(k)] = facts
    return {"schema": LAMBDA_CHOICE_SCHEMA, "method": first.method, "source": first.source, "target": first.target,
            "rule": rule, "by_split": by_split}


def _check_choice(choice: dict[str, Any], runs: list[Run], rule: str, where: str) -> None:
    """``choice``: a :data:`LAMBDA_CHOICE_SCHEMA` document of ``rule`` for the method and pair of ``runs``,
    made among their lambdas (and, for per_pair, on their shots and split)."""
    current = runs[0]
    if not isinstance(choice, dict) or choice.get("schema") != LAMBDA_CHOICE_SCHEMA:
        got = choice.get("schema") if isinstance(choice, dict) else type(choice).__name__
        raise InputFileError(where, f"a lambda choice (schema {LAMBDA_CHOICE_SCHEMA}, written by rbda choose-lambda); "
                                    f"got schema {got!r}")
    expected = {"method": current.method, "source": current.source, "target": current.target, "rule": rule}
    for key, value in expected.items():
        if choice.get(key) != value:
            raise InputFileError(where, f"the lambda choice of {key} {value!r} (the {key} of --runs"
                                        f"{' and --rule' if key == 'rule' else ''}); got {choice.get(key)!r}")
    by_split = choice.get("by_split")
    if not isinstance(by_split, dict) or str(current.split) not in by_split:
        raise InputFileError(where, f"a lambda choice with the choice of split {current.split} under 'by_split' "
                                    f"({current.path}); it has splits "
                                    f"{sorted(by_split) if isinstance(by_split, dict) else 'none'}")
    facts = by_split[str(current.split)]
    for key in ("chosen_lambda", "candidates", "tie", "tie_broken_by", "reference_shots", "reference_splits"):
        if key not in facts:
            raise InputFileError(where, f"a lambda choice with key {key!r} for split {current.split}; it is missing")
    candidates = sorted(format_lambda(c["lambda"]) for c in facts["candidates"])
    if format_lambda(facts["chosen_lambda"]) not in candidates:
        raise InputFileError(where, f"a lambda choice whose chosen_lambda is one of its candidates "
                                    f"({', '.join(candidates)}); got {facts['chosen_lambda']!r}")
    if candidates != sorted(run.lambda_name for run in runs):
        raise InputFileError(where, f"a lambda choice among the lambdas of --runs "
                                    f"({', '.join(sorted(run.lambda_name for run in runs))}); it chose among "
                                    f"{', '.join(candidates)}")
    if current.shots not in facts["reference_shots"]:
        raise InputFileError(where, f"a choice made on every shot count of the pair, including shots "
                                    f"{current.shots} ({current.path}); it was made on shots {facts['reference_shots']}")


def read_choice(path: str) -> dict[str, Any]:
    """A lambda choice JSON (checked by :func:`select_lambda`); an error naming the file if it is not JSON."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise InputFileError(path, f"a readable lambda choice JSON ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"a lambda choice JSON (rbda choose-lambda), not valid JSON: {exc}") from None


def select_lambda(runs: list[Run], rule: str = DEFAULT_SELECTION_RULE,
                  choice: dict[str, Any] | None = None, choice_path: str = "--choice") -> dict[str, Any]:
    """The selected run's JSON (a new dict) with its ``selection`` object.

    ``runs``: the current (pair, shots, split)'s runs of one lambda method, one
    per lambda. ``choice``: the pair's :func:`choose_lambda` document (read from
    ``choice_path``) for ``per_pair`` and ``first_split``; none for ``per_split``,
    which chooses on ``runs``.
    """
    if rule not in SELECTION_RULES:
        raise SettingError("--rule", " or ".join(SELECTION_RULES), rule)
    _check_candidate_group(runs, "--runs")
    if rule == "per_split":
        if choice is not None:
            raise SettingError("--choice", "no lambda choice with rule per_split (it chooses on --runs)", "given")
        chosen_lambda, facts = choose(runs)
    else:
        if choice is None:
            raise SettingError("--choice", f"the pair's lambda choice (rbda choose-lambda) with rule {rule}")
        _check_choice(choice, runs, rule, choice_path)
        facts = dict(choice["by_split"][str(runs[0].split)])
        chosen_lambda = facts["chosen_lambda"]
    # the chosen lambda is among the runs' lambdas: choose() picks from them, _check_choice checks it
    chosen = {run.lambda_name: run for run in runs}[format_lambda(chosen_lambda)]
    result = copy.deepcopy(chosen.data)
    result["selection"] = {"rule": rule, **facts}
    return result
