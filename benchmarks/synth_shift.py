"""Is the synthetic data learnable in-survey, and shifted across surveys?

Writes the four synthetic surveys (``rbda synth`` layouts), preprocesses them
through the real readers, trains a small CNN (the study's baseline shape) on
80% of each survey with class-balanced batches, and prints the balanced
accuracy of each model on the held-out 20% of every survey: the diagonal is
the in-survey task, the rest the cross-survey shift.

    .venv/bin/python benchmarks/synth_shift.py [--n 2000] [--iterations 1500] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rbda.ingest.preprocess import convert_survey
from rbda.seeding import derive_seed, rng
from rbda.ingest.store import load_survey
from rbda.ingest.synth import synthesize
from rbda.study import SURVEYS  # the shipped survey declarations (each has a synthetic specification)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 5), nn.BatchNorm2d(32), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(32, 32, 5), nn.BatchNorm2d(32), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 2),
    )


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([(predicted[labels == c] == c).mean() for c in (0, 1)]))


def train(x: np.ndarray, y: np.ndarray, iterations: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    gen = rng(seed, "batches")
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    by_class = [np.flatnonzero(y == c) for c in (0, 1)]
    model.train()
    for _ in range(iterations):
        idx = np.concatenate([gen.choice(rows, 25) for rows in by_class])
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx].astype(np.int64)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1).numpy()


def machine() -> str:
    import platform

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    torch.set_num_threads(1)
    data = {}
    with tempfile.TemporaryDirectory() as tmp:
        for survey in SURVEYS:
            raw = Path(tmp) / survey
            synthesize(survey, args.n, args.seed, raw)
            convert_survey(survey, [raw], Path(tmp) / f"{survey}.parquet")
            s = load_survey(Path(tmp) / f"{survey}.parquet")
            order = rng(args.seed, "split", survey).permutation(len(s))
            cut = int(0.8 * len(s))
            data[survey] = (s.stamps[order[:cut]], s.labels[order[:cut]], s.stamps[order[cut:]], s.labels[order[cut:]])
    print(f"balanced accuracy, small CNN, {args.iterations} iterations x 50, n={args.n} per survey")
    print("train \\ test " + " ".join(f"{t:>7}" for t in SURVEYS))
    for source in SURVEYS:
        xs, ys, _, _ = data[source]
        model = train(xs, ys, args.iterations, derive_seed(args.seed, "model", source))
        row = [balanced_accuracy(data[t][3], predict(model, data[t][2])) for t in SURVEYS]
        print(f"{source:>12} " + " ".join(f"{v:7.3f}" for v in row))


if __name__ == "__main__":
    main()
