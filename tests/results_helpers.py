"""Hand-made run JSONs for the results tests (helper module, no tests here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rbda.study import format_lambda, ordered_pairs, pair_name

VERSIONS = {"rbda": "0.1.0", "torch": "2.13.0", "python": "3.11.7"}


def evaluation(survey: str, role: str, bacc: float) -> dict:
    return {"survey": survey, "role": role, "part": "test", "bacc": bacc,
            "n": 100, "tp": 45, "fn": 5, "tn": 40, "fp": 10}


def run_json(method: str, source: str, target: str | None, split: int, shots: int | None = None,
             lam: float | None = None, evaluations: list[dict] | None = None,
             val_bacc: float = 0.9) -> dict:
    return {
        "schema": "rbda.run/1", "method": method, "source": source, "target": target,
        "split": split, "shots": shots, "lambda": lam, "seed": 2023,
        "evaluations": evaluations or [],
        "validation": {"best_bacc": val_bacc, "best_epoch": 3,
                       "history": [{"epoch": 1, "val_bacc": val_bacc, "train_loss": 0.5}]},
        "training": {"epochs_run": 5, "best_epoch": 3, "iterations": 100, "stopped_by": "patience",
                     "wall_seconds": 1.0, "device": "cpu", "threads": 1, "resumed_from_epoch": None},
        "hyperparameters": {"lr": 0.01},
        "versions": dict(VERSIONS),
    }


def baseline_run(source: str, split: int, baccs: dict[str, float]) -> dict:
    evals = [evaluation(s, "source" if s == source else "other", b) for s, b in baccs.items()]
    return run_json("baseline", source, None, split, evaluations=evals, val_bacc=baccs[source])


def adapted_run(method: str, source: str, target: str, split: int, shots: int, source_bacc: float,
                target_bacc: float, lam: float | None = None, val_bacc: float = 0.9) -> dict:
    evals = [evaluation(source, "source", source_bacc), evaluation(target, "target", target_bacc)]
    return run_json(method, source, target, split, shots, lam, evals, val_bacc)


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def fabricate_study(root: Path, surveys: list[str], splits: int, shots: list[int],
                    lambdas: list[float], seed: int = 0) -> tuple[Path, Path]:
    """A complete synthetic study in the architecture's layout; returns (runs list, config).

    Baseline: 0.95 at home, 0.7 elsewhere; FT/MME rise on the target with shots, FT drops on
    the source, MME does not; the per-lambda MME runs' validation BACC prefers the middle lambda.
    """
    from rbda.results.runs import load_runs
    from rbda.results.selection import select_lambda

    rng = np.random.default_rng(seed)
    noise = lambda: float(rng.normal(0, 0.01))  # noqa: E731
    runs_dir = root / "runs"
    paths: list[Path] = []
    for source in surveys:
        for k in range(splits):
            baccs = {s: (0.95 if s == source else 0.70) + noise() for s in surveys}
            paths.append(write(runs_dir / "baseline" / source / f"split-{k}.json",
                               baseline_run(source, k, baccs)))
    for source, target in ordered_pairs(surveys):
        pair = pair_name(source, target)
        for n in shots:
            gain = 0.2 * np.log1p(n) / np.log1p(max(shots))
            for k in range(splits):
                paths.append(write(
                    runs_dir / "finetune" / pair / f"shots-{n}" / f"split-{k}.json",
                    adapted_run("finetune", source, target, k, n, 0.80 + noise(),
                                0.70 + gain + noise())))
                lambda_paths = []
                for i, lam in enumerate(lambdas):
                    val = 0.8 + gain - 0.02 * abs(i - len(lambdas) // 2) + noise()
                    lambda_paths.append(write(
                        runs_dir / "mme" / pair / f"shots-{n}" / f"lambda-{format_lambda(lam)}"
                        / f"split-{k}.json",
                        adapted_run("mme", source, target, k, n, 0.94 + noise(),
                                    0.72 + gain + noise(), lam, val_bacc=min(val, 1.0))))
                selected = select_lambda(load_runs(lambda_paths), "per_split")
                paths.append(write(runs_dir / "mme-selected" / pair / f"shots-{n}" / f"split-{k}.json",
                                   selected))
                paths.extend(lambda_paths)
    runs_list = root / "runs.txt"
    runs_list.write_text("".join(f"{p}\n" for p in paths))
    config = root / "config.json"
    config.write_text(json.dumps({"surveys": surveys, "splits": splits, "shots": shots,
                                  "lambdas": lambdas, "seed": 2023,
                                  "selection": {"rule": "per_split"}}))
    return runs_list, config
