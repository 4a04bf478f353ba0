"""Loading and validating run JSON files (schema ``rbda.run/1``).

A run file is checked against the contract in ``docs/architecture.md`` on
load; anything missing or inconsistent raises :class:`InputFileError` naming
the file and what was expected. Loaded runs become one tidy table with a row
per (run, test-part evaluation).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import jsonschema

from rbda.errors import InputFileError
from rbda.registry import BASELINE, LAMBDA_METHODS, METHODS, SELECTED_SUFFIX
from rbda.study import RUN_SCHEMA, SELECTION_RULES, format_lambda, pair_name

#: Kind of a run in the study: its method, with the selected runs of a lambda method apart
#: (``mme-selected``, ``ent-selected``; see :func:`selected_kind`). A lambda method's unselected
#: runs (kind ``mme``) are the per-lambda candidates.
KIND_BASELINE = BASELINE


def selected_kind(method: str) -> str:
    """``mme`` -> ``mme-selected``: the kind of a lambda method's selected runs."""
    return f"{method}{SELECTED_SUFFIX}"


def score_kind(method: str) -> str:
    """The kind of run that stands for an adaptation method in the tables: its selected runs
    for a lambda method (``mme-selected``), its runs otherwise (``finetune``)."""
    return selected_kind(method) if method in LAMBDA_METHODS else method


_NULLABLE_STRING = {"type": ["string", "null"]}
_BACC = {"type": "number", "minimum": 0, "maximum": 1}
_FRACTION_OR_NULL = {"type": ["number", "null"], "minimum": 0, "maximum": 1}

RUN_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "schema", "method", "source", "target", "split", "shots", "lambda",
        "evaluations", "validation", "versions",
    ],
    "properties": {
        "schema": {"const": RUN_SCHEMA},
        "method": {"enum": list(METHODS)},
        "source": {"type": "string", "minLength": 1},
        "target": _NULLABLE_STRING,
        "split": {"type": "integer", "minimum": 0},
        "shots": {"type": ["integer", "null"], "minimum": 1},
        "lambda": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "evaluations": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["survey", "role", "part", "bacc"],
                "properties": {
                    "survey": {"type": "string"},
                    "role": {"enum": ["source", "target", "other"]},
                    "part": {"type": "string"},
                    "bacc": _BACC,
                    # rbda.learn.metrics.survey_team_metrics: fractions, null where undefined
                    "survey_metrics": {
                        "type": "object",
                        "properties": {
                            **{name: _FRACTION_OR_NULL for name in ("roc_auc", "purity", "completeness")},
                            "at_completeness": {"type": "object", "additionalProperties": {
                                "type": ["object", "null"],
                                "properties": {name: _FRACTION_OR_NULL
                                               for name in ("fpr", "completeness", "purity", "threshold")},
                            }},
                        },
                    },
                },
            },
        },
        "validation": {
            "type": "object",
            "required": ["best_bacc"],
            "properties": {"best_bacc": _BACC},
        },
        "versions": {"type": "object"},
        "errors": {  # a baseline's most confident test errors (rbda.learn.evaluate.confident_errors)
            "type": "object",
            "required": ["survey", "part", "false_positives", "false_negatives"],
            "properties": {
                kind: {"type": "array", "items": {
                    "type": "object", "required": ["row", "p_real"],
                    "properties": {"row": {"type": "integer", "minimum": 0},
                                   "p_real": {"type": "number", "minimum": 0, "maximum": 1}}}}
                for kind in ("false_positives", "false_negatives")
            },
        },
        "selection": {
            "type": "object",
            "required": ["rule", "chosen_lambda", "candidates"],
            "properties": {
                "rule": {"enum": list(SELECTION_RULES)},
                "chosen_lambda": {"type": "number", "exclusiveMinimum": 0},
                "candidates": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["lambda", "val_bacc"],
                        "properties": {"lambda": {"type": "number"}, "val_bacc": _BACC},
                    },
                },
            },
        },
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(RUN_JSON_SCHEMA)


@dataclass(frozen=True)
class Run:
    """One validated run file."""

    path: Path
    data: dict[str, Any]

    @property
    def method(self) -> str:
        return self.data["method"]

    @property
    def source(self) -> str:
        return self.data["source"]

    @property
    def target(self) -> str | None:
        return self.data["target"]

    @property
    def split(self) -> int:
        return self.data["split"]

    @property
    def shots(self) -> int | None:
        return self.data["shots"]

    @property
    def lambda_(self) -> float | None:
        return self.data["lambda"]

    @property
    def lambda_name(self) -> str | None:
        return None if self.lambda_ is None else format_lambda(self.lambda_)

    @property
    def val_bacc(self) -> float:
        return float(self.data["validation"]["best_bacc"])

    @property
    def is_selected(self) -> bool:
        return "selection" in self.data

    @property
    def kind(self) -> str:
        if self.method in LAMBDA_METHODS and self.is_selected:
            return selected_kind(self.method)
        return self.method

    def key(self) -> tuple:
        """What makes a run unique in a study: kind, pair, shots, lambda, split.

        A selected MME run is unique per (pair, shots, split); its lambda is the
        outcome of the selection, not part of its identity.
        """
        lam = None if self.is_selected else self.lambda_name
        return (self.kind, self.source, self.target, self.shots, lam, self.split)

    def describe(self) -> str:
        parts = [self.kind, self.source if self.target is None else pair_name(self.source, self.target)]
        if self.shots is not None:
            parts.append(f"shots={self.shots}")
        if self.lambda_ is not None and not self.is_selected:
            parts.append(f"lambda={self.lambda_name}")
        parts.append(f"split={self.split}")
        return " ".join(parts)


def _first_schema_error(data: Any) -> str | None:
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    err = errors[0]
    where = "/".join(str(p) for p in err.absolute_path) or "top level"
    return f"{where}: {err.message}"


def _consistency_problem(data: dict[str, Any]) -> str | None:
    """Method-specific rules the JSON schema cannot express; ``None`` when fine."""
    method, source, target = data["method"], data["source"], data["target"]
    shots, lam = data["shots"], data["lambda"]
    tested = [e["survey"] for e in data["evaluations"] if e["part"] == "test"]
    if len(set(tested)) != len(tested):
        return "at most one test evaluation per survey"
    test_roles = {(e["role"], e["survey"]) for e in data["evaluations"] if e["part"] == "test"}
    if method == "baseline":
        if target is not None or shots is not None or lam is not None:
            return "a baseline run has target, shots and lambda null"
        if ("source", source) not in test_roles:
            return f"a baseline run has a test evaluation of its own survey {source!r} with role 'source'"
        return None
    if target is None or target == source:
        return f"a {method} run has a target survey different from its source {source!r}"
    if shots is None:
        return f"a {method} run has an integer 'shots' >= 1"
    if method == "finetune" and lam is not None:
        return "a finetune run has lambda null"
    if method in LAMBDA_METHODS and lam is None:
        return f"an {method} run has a lambda > 0"
    for role, survey in (("source", source), ("target", target)):
        if (role, survey) not in test_roles:
            return f"a {method} run has a test evaluation of {survey!r} with role {role!r}"
    selection = data.get("selection")
    if selection is not None:
        if method not in LAMBDA_METHODS:
            return f"only runs of {', '.join(LAMBDA_METHODS)} carry a 'selection'"
        if format_lambda(selection["chosen_lambda"]) != format_lambda(lam):
            return "selection.chosen_lambda equals the run's lambda"
    return None


def validate_run(data: Any, path: str | Path) -> Run:
    """Check ``data`` against the run contract; return it as a :class:`Run`."""
    problem = _first_schema_error(data)
    if problem is not None:
        raise InputFileError(path, f"a run result of schema {RUN_SCHEMA!r} ({problem})")
    problem = _consistency_problem(data)
    if problem is not None:
        raise InputFileError(path, f"a consistent run result: {problem}")
    if not all(math.isfinite(value) for value in _fractions(data)):
        raise InputFileError(path, "finite balanced accuracies and survey metrics (no NaN or infinity)")
    return Run(Path(path), data)


def _fractions(data: dict[str, Any]) -> Iterator[float]:
    """Every BACC in a run (evaluations, validation, selection candidates) and every recorded survey
    metric (JSON allows NaN, which the schema's bounds let through)."""
    yield from (e["bacc"] for e in data["evaluations"])
    for evaluation in data["evaluations"]:
        team = evaluation.get("survey_metrics") or {}
        yield from (team[name] for name in ("roc_auc", "purity", "completeness") if team.get(name) is not None)
        for point in (team.get("at_completeness") or {}).values():
            yield from (point[name] for name in ("fpr", "completeness", "purity", "threshold")
                        if point and point.get(name) is not None)
    yield data["validation"]["best_bacc"]
    yield from (c["val_bacc"] for c in data.get("selection", {}).get("candidates", []))


def load_run(path: str | Path) -> Run:
    """Read and validate one run JSON file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputFileError(path, "an existing run JSON file") from None
    except OSError as exc:
        raise InputFileError(path, f"a readable run JSON file ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"valid JSON ({exc.msg})", where=f"line {exc.lineno}") from None
    return validate_run(data, path)


def read_runs_list(list_path: str | Path) -> list[Path]:
    """Run paths from a list file: one per line; blank lines and ``#`` comments ignored."""
    list_path = Path(list_path)
    try:
        lines = list_path.read_text().splitlines()
    except OSError:
        raise InputFileError(list_path, "a readable list of run JSON paths, one per line") from None
    paths = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if not Path(entry).is_file():
            raise InputFileError(list_path, f"paths of existing files; {entry!r} does not exist",
                                 where=f"line {number}")
        paths.append(Path(entry))
    if not paths:
        raise InputFileError(list_path, "at least one run JSON path")
    return paths


def check_unique(runs: Iterable[Run]) -> None:
    """Raise if two files describe the same run (same kind, pair, shots, lambda, split)."""
    seen: dict[tuple, Run] = {}
    for run in runs:
        key = run.key()
        if key in seen:
            raise InputFileError(
                run.path,
                f"one file per run, but {seen[key].path} is the same run ({run.describe()})",
            )
        seen[key] = run


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Load, validate and check uniqueness of many run files."""
    runs = [load_run(p) for p in paths]
    check_unique(runs)
    return runs
