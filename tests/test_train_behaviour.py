"""Behaviour of the methods on the synthetic surveys of `rbda synth` (slow).

The surveys are synthesised in their raw layouts and preprocessed by the
package, as the demo workflow does, then trained with short settings. Only
what is robust is asserted: a baseline learns its own survey, in-survey
balanced accuracy beats cross-survey on average, fine-tuning at the largest
shot count beats the baseline on the target, and MME loses less source
accuracy than fine-tuning (means over two pairs with a large shift).
``python tests/test_train_behaviour.py`` prints the full measurements.
"""

from __future__ import annotations

import io
import itertools
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from rbda.learn.methods import method_class
from rbda.learn.data import SurveyTensors
from rbda.learn.methods.base import RunSpec
from rbda.ingest.splits import make_split
from rbda.device import configure_torch
from rbda.learn.evaluate import evaluate_method
from rbda.learn.train import TrainConfig, train

SURVEYS = ("hits", "des", "ztf", "atlas")
SEED = 7
SHORT = TrainConfig(epoch_size=1000, max_epochs=6, patience=3)


def synthetic_surveys(directory: Path, n: int, seed: int = SEED) -> dict[str, SurveyTensors]:
    from rbda.ingest.preprocess import convert_survey
    from rbda.ingest.store import load_survey
    from rbda.ingest.synth import synthesize

    surveys = {}
    for name in SURVEYS:
        raw = directory / name
        synthesize(name, n, seed, raw)
        convert_survey(name, [raw], directory / f"{name}.parquet")
        s = load_survey(directory / f"{name}.parquet")
        labels = np.asarray(s.labels, np.int8)
        surveys[name] = SurveyTensors(name, torch.from_numpy(s.stamps), torch.from_numpy(labels.astype(np.int64)),
                                   labels, make_split(labels, name, 0, seed))
    return surveys


def in_and_cross_survey(table: dict) -> tuple[list[float], list[float]]:
    """The baseline table's in-survey BACCs (the diagonal) and cross-survey BACCs (the rest)."""
    return ([table[s][s] for s in SURVEYS],
            [table[s][t] for s in SURVEYS for t in SURVEYS if s != t])


def _bacc(evaluations, role):
    return next(e["bacc"] for e in evaluations if e["role"] == role)


#: The adaptation methods measured, with their lambda (None: the method takes none).
METHOD_LAMBDAS = {"finetune": None, "mme": 0.1, "st": None, "ent": 0.1, "dann": None, "mmefm": 0.1, "cdac": 0.1}


def measure(surveys: dict[str, SurveyTensors], pairs, shots=(1, 5, 20), lam=0.1,
            methods=("finetune", "mme"), spec_options: dict | None = None, seed: int = SEED) -> dict:
    """Baseline table, and each method's source and target BACC per (pair, shots)."""
    quiet = io.StringIO()
    table, models = {}, {}
    for source in SURVEYS:
        method = method_class("baseline")(RunSpec("baseline", source, None, 0, seed), surveys)
        result = train(method, SHORT, progress_stream=quiet)
        models[source] = result.model.state_dict()
        table[source] = {e["survey"]: e["bacc"] for e in evaluate_method(method, result.model)}
    adapted = {}
    for (source, target), n in itertools.product(pairs, shots):
        for name in methods:
            lam_value = None if METHOD_LAMBDAS[name] is None else lam
            spec = RunSpec(name, source, target, 0, seed, shots=n, lam=lam_value,
                           **(spec_options or {}).get(name, {}))
            method = method_class(name)(spec, surveys)
            result = train(method, SHORT, init_state=models[source], progress_stream=quiet)
            ev = evaluate_method(method, result.model)
            adapted[(source, target, n, name)] = (_bacc(ev, "source"), _bacc(ev, "target"))
    return {"table": table, "adapted": adapted}


@pytest.mark.slow
def test_methods_behave_as_in_the_study_on_synthetic_surveys(tmp_path):
    configure_torch(threads=1, deterministic=False)
    surveys = synthetic_surveys(tmp_path, 800)
    pairs = [("ztf", "des"), ("hits", "ztf")]
    m = measure(surveys, pairs, shots=(20,))
    table, adapted = m["table"], m["adapted"]
    in_survey, cross = in_and_cross_survey(table)
    assert min(in_survey) > 0.75
    assert statistics.mean(in_survey) > statistics.mean(cross) + 0.05
    ft_gain = [adapted[(s, t, 20, "finetune")][1] - table[s][t] for s, t in pairs]
    assert statistics.mean(ft_gain) > 0
    # the study's main finding: MME keeps the source closer to the baseline than FT
    ft_drop = [table[s][s] - adapted[(s, t, 20, "finetune")][0] for s, t in pairs]
    mme_drop = [table[s][s] - adapted[(s, t, 20, "mme")][0] for s, t in pairs]
    assert statistics.mean(mme_drop) < statistics.mean(ft_drop)


def print_methods_at(m: dict, pairs, shots: int, methods) -> None:
    """Per pair: each method's target gain and source loss (BACC) against the baseline, then means."""
    print(f"at {shots} shots, target gain / source loss vs baseline: " + " | ".join(methods))
    gains = {name: [] for name in methods}
    for s, t in pairs:
        cells = []
        for name in methods:
            src, tgt = m["adapted"][(s, t, shots, name)]
            gain, loss = tgt - m["table"][s][t], m["table"][s][s] - src
            gains[name].append((gain, loss))
            cells.append(f"{gain:+.3f}/{loss:+.3f}")
        print(f"  {s}->{t}: " + " | ".join(cells))
    for name in methods:
        g = [x[0] for x in gains[name]]
        vs_mme = ""
        if "mme" in methods and name != "mme":
            more = sum(x[1] > y[1] for x, y in zip(gains[name], gains["mme"]))
            vs_mme = f", more source loss than mme on {more}/{len(g)} pairs"
        print(f"  {name}: mean target gain {statistics.mean(g):+.3f}, beats baseline on {sum(x > 0 for x in g)}/{len(g)}"
              f" pairs, mean source loss {statistics.mean(x[1] for x in gains[name]):+.3f}{vs_mme}")


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="measure the methods on the synthetic surveys")
    parser.add_argument("threads", nargs="?", type=int, default=1)
    parser.add_argument("--methods", default="finetune,mme", help="comma-separated, e.g. finetune,mme,st,ent,dann,mmefm,cdac")
    parser.add_argument("--size", type=int, default=2000, help="alerts per synthetic survey")
    parser.add_argument("--pairs", type=int, default=12, help="first N ordered pairs")
    parser.add_argument("--shots", default="1,5,20")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the surveys, splits, shots and training")
    parser.add_argument("--tau", type=float, default=None, help="mmefm's pseudo-label threshold (default: the option's)")
    parser.add_argument("--mu", type=float, default=None, help="mmefm's consistency weight (default: the option's)")
    args = parser.parse_args()
    methods = args.methods.split(",")
    shots = tuple(int(x) for x in args.shots.split(","))
    configure_torch(threads=args.threads, deterministic=False)
    with tempfile.TemporaryDirectory() as tmp:
        surveys = synthetic_surveys(Path(tmp), args.size, args.seed)
        pairs = [(s, t) for s in SURVEYS for t in SURVEYS if s != t][:args.pairs]
        mmefm = {k: v for k, v in (("tau", args.tau), ("mu", args.mu)) if v is not None}
        m = measure(surveys, pairs, shots=shots, methods=methods, spec_options={"mmefm": mmefm}, seed=args.seed)
    print("baseline BACC, train \\ test: " + " ".join(SURVEYS))
    for s in SURVEYS:
        print(f"  {s:6s} " + " ".join(f"{m['table'][s][t]:.3f}" for t in SURVEYS))
    in_survey, cross = in_and_cross_survey(m["table"])
    print(f"  in-survey mean {statistics.mean(in_survey):.3f}, cross-survey mean {statistics.mean(cross):.3f}")
    for n in shots:
        print_methods_at(m, pairs, n, methods)
