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
        "hyperparameters": {"lr": 0.01, "val_shots": 10},
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


#: Per adaptation method of a fabricated study: (source BACC, target BACC at 0 gain, gain scale).
FABRICATED = {"finetune": (0.80, 0.70, 0.20), "mme": (0.94, 0.72, 0.20), "st": (0.90, 0.70, 0.15),
              "ent": (0.85, 0.71, 0.18), "dann": (0.93, 0.69, 0.10)}


def fabricate_study(root: Path, surveys: list[str], splits: int, shots: list[int],
                    lambdas: list[float], seed: int = 0,
                    methods: tuple[str, ...] = ("finetune", "mme")) -> tuple[Path, Path]:
    """A complete synthetic study in the architecture's layout; returns (runs list, config).

    Baseline: 0.95 at home, 0.7 elsewhere; every method rises on the target with shots (see
    :data:`FABRICATED`): FT drops on the source, MME does not; the per-lambda runs of a lambda
    method (MME, ENT) have a validation BACC that prefers the middle lambda. The config names
    ``methods`` only when they are not the published study's.
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
            share = np.log1p(n) / np.log1p(max(shots))
            for k in range(splits):
                for method in methods:
                    on_source, on_target, scale = FABRICATED[method]
                    gain = scale * share
                    if method not in ("mme", "ent"):
                        paths.append(write(
                            runs_dir / method / pair / f"shots-{n}" / f"split-{k}.json",
                            adapted_run(method, source, target, k, n, on_source + noise(),
                                        on_target + gain + noise())))
                        continue
                    lambda_paths = []
                    for i, lam in enumerate(lambdas):
                        val = 0.8 + gain - 0.02 * abs(i - len(lambdas) // 2) + noise()
                        lambda_paths.append(write(
                            runs_dir / method / pair / f"shots-{n}" / f"lambda-{format_lambda(lam)}"
                            / f"split-{k}.json",
                            adapted_run(method, source, target, k, n, on_source + noise(),
                                        on_target + gain + noise(), lam, val_bacc=min(val, 1.0))))
                    selected = select_lambda(load_runs(lambda_paths), "per_split")
                    paths.append(write(runs_dir / f"{method}-selected" / pair / f"shots-{n}" / f"split-{k}.json",
                                       selected))
                    paths.extend(lambda_paths)
    runs_list = root / "runs.txt"
    runs_list.write_text("".join(f"{p}\n" for p in paths))
    config = root / "config.json"
    settings = {"surveys": surveys, "splits": splits, "shots": shots, "lambdas": lambdas, "seed": 2023,
                "selection": {"rule": "per_split"}}
    if tuple(methods) != ("finetune", "mme"):
        settings["methods"] = list(methods)
    config.write_text(json.dumps(settings))
    return runs_list, config
