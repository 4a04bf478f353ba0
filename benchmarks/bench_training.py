"""Training throughput: rbda's loop against a bare loop and a Dataset + DataLoader loop.

All three train the study's baseline CNN (SGD, momentum 0.9, class-balanced
batches of 50) on the same in-memory synthetic stamps, in one process, with
the same thread count; they are timed in interleaved rounds and the median of
each is reported, with the ratios side by side:

* bare     -- preloaded tensors, ``randint`` indices, forward/backward/step:
              the practical limit of eager PyTorch for this model;
* loader   -- a conventional ``Dataset`` whose ``__getitem__`` builds one item
              (NumPy slice -> tensor), a ``WeightedRandomSampler`` for class
              balance and a ``DataLoader`` collating batches of 50;
* rbda     -- :func:`rbda.train.train` with the baseline method (epoch
              planning, loss bookkeeping, per-epoch validation on 200 items).

It also times one 10,000-item epoch of the baseline/fine-tuning loop and of
MME (two updates per iteration), validation inference, and projects the
cost of the full study from them.

    .venv/bin/python benchmarks/bench_training.py [--threads 1] [--rounds 3] [--items 5000]

With one thread the loops are timed by process CPU time, so the figures hold
on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F

from rbda.evaluate import predict
from rbda.methods import method_class
from rbda.methods.base import RunSpec, SurveyData
from rbda.models import StampClassifier
from rbda.splits import Split
from rbda.train import TrainConfig, configure_torch, train

BATCH = 50
# With one thread, process CPU time measures the work itself and is nearly
# insensitive to other jobs sharing the machine (main() switches to wall time
# for several threads, whose CPU times add up).
clock = time.process_time
# The published study: 4 surveys x 10 splits baselines; 12 pairs x 5 shots x 10 splits FT;
# the same for MME per lambda (thesis grid: 8 lambdas).
STUDY_RUNS = {"baseline": 40, "finetune": 600, "mme": 600 * 8}
SURVEY_SIZES = {"hits": 1_437_684, "des": 898_963, "ztf": 35_795, "atlas": 3_678}  # METHOD.md section 1


def synthetic_survey(name: str, n: int, seed: int) -> SurveyData:
    """Random stamps and labels; a split with 200 validation and 200 test rows."""
    rng = np.random.default_rng(seed)
    stamps = rng.normal(size=(n, 3, 21, 21)).astype(np.float32)
    labels = (rng.random(n) < 0.3).astype(np.int8)  # imbalanced, so class balance matters
    order = rng.permutation(n)
    split = Split(train=np.sort(order[400:]), val=np.sort(order[:200]), test=np.sort(order[200:400]),
                  n_rows=n, seed=seed)
    return SurveyData(name, torch.from_numpy(stamps), torch.from_numpy(labels.astype(np.int64)), labels, split)


def bare_loop(survey: SurveyData, items: int, channels_last: bool = False) -> float:
    """Seconds to train ``items`` samples with the bare loop."""
    torch.manual_seed(0)
    model = StampClassifier("linear").train()
    x, y = survey.stamps, survey.labels
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_rows = torch.from_numpy(survey.split.train)
    start = clock()
    for _ in range(items // BATCH):
        rows = train_rows[torch.randint(0, train_rows.numel(), (BATCH,))]
        loss = F.cross_entropy(model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return clock() - start


class StampDataset(torch.utils.data.Dataset):
    """The conventional way: one item at a time from NumPy arrays."""

    def __init__(self, stamps: np.ndarray, labels: np.ndarray, rows: np.ndarray):
        self.stamps, self.labels, self.rows = stamps, labels, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        return torch.from_numpy(self.stamps[row]), int(self.labels[row])


def balanced_loader(survey: SurveyData, items: int) -> torch.utils.data.DataLoader:
    """Class-balanced batches of 50 built item by item (``WeightedRandomSampler``)."""
    rows = survey.split.train
    labels = survey.labels_np[rows]
    class_weight = 1.0 / np.bincount(labels, minlength=2)
    sampler = torch.utils.data.WeightedRandomSampler(class_weight[labels], num_samples=items, replacement=True)
    return torch.utils.data.DataLoader(StampDataset(survey.stamps.numpy(), survey.labels_np, rows),
                                       batch_size=BATCH, sampler=sampler, drop_last=True)


def loader_loop(survey: SurveyData, items: int) -> float:
    torch.manual_seed(0)
    model = StampClassifier("linear").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = balanced_loader(survey, items)
    start = clock()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y.long())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return clock() - start


def loader_batches_only(survey: SurveyData, items: int) -> float:
    """Seconds to produce ``items`` samples' batches with the DataLoader, no model."""
    loader = balanced_loader(survey, items)
    start = clock()
    for _ in loader:
        pass
    return clock() - start


def rbda_batches_only(surveys: dict, items: int) -> float:
    """Seconds to plan and gather ``items`` samples' batches as rbda's loop does, no model."""
    method = method_class("baseline")(RunSpec("baseline", "des", None, 0, seed=1), surveys)
    generator = torch.Generator()
    start = clock()
    plan = method.plan_epoch(items // BATCH, generator)
    for i in range(items // BATCH):
        method.source.batch(plan["source"][i])
    return clock() - start


def rbda_loop(surveys: dict, method: str, items: int, init_state=None, **options) -> float:
    """Seconds for :func:`rbda.train.train` to run one epoch of ``items`` samples."""
    spec = {"baseline": RunSpec("baseline", "des", None, 0, seed=1),
            "finetune": RunSpec("finetune", "des", "hits", 0, seed=1, shots=40),
            "mme": RunSpec("mme", "des", "hits", 0, seed=1, shots=40, lam=0.1)}[method]
    config = TrainConfig(epoch_size=items, max_epochs=1, patience=10, **options)
    start = clock()
    train(method_class(method)(spec, surveys), config, init_state=init_state, progress_stream=io.StringIO())
    return clock() - start


def inference_seconds(survey: SurveyData, items: int) -> float:
    model = StampClassifier("linear")
    rows = torch.from_numpy(np.resize(survey.split.train, items))
    start = clock()
    predict(model, survey.stamps, rows)
    return clock() - start


def median_time(fn, rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=5000, help="training samples per timed run")
    parser.add_argument("--epochs-per-run", type=int, default=150,
                        help="assumed epochs per run for the projection (patience 100 => at least 101)")
    args = parser.parse_args()
    global clock
    if args.threads > 1:
        clock = time.perf_counter
    configure_torch(args.threads, deterministic=False)
    surveys = {"des": synthetic_survey("des", 20_000, 1), "hits": synthetic_survey("hits", 20_000, 2)}
    # train(channels_last=True) converts its surveys' stamps in place: give it its own
    surveys_cl = {"des": synthetic_survey("des", 20_000, 1), "hits": synthetic_survey("hits", 20_000, 2)}
    baseline_state = StampClassifier("linear").state_dict()
    n = args.items

    bare_loop(surveys["des"], 1000)  # warm-up (allocator, kernels)
    timings: dict[str, list[float]] = {k: [] for k in ("bare", "loader", "rbda", "bare channels-last",
                                                        "rbda channels-last", "rbda channels-last+bf16",
                                                        "rbda mme")}
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits all alike
        timings["bare"].append(bare_loop(surveys["des"], n))
        timings["loader"].append(loader_loop(surveys["des"], n))
        timings["rbda"].append(rbda_loop(surveys, "baseline", n))
        timings["bare channels-last"].append(bare_loop(surveys["des"], n, channels_last=True))
        timings["rbda channels-last"].append(rbda_loop(surveys_cl, "baseline", n, channels_last=True))
        timings["rbda channels-last+bf16"].append(rbda_loop(surveys_cl, "baseline", n, channels_last=True, bf16=True))
        timings["rbda mme"].append(rbda_loop(surveys, "mme", n, init_state=baseline_state))
    rate = {k: n / statistics.median(v) for k, v in timings.items()}

    timed_by = "process CPU time" if clock is time.process_time else "wall time"
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}, {n} samples x {args.rounds} rounds "
          f"(median), timed by {timed_by}")
    print(f"{'loop':28s} {'samples/s':>10s} {'vs bare':>8s} {'vs loader':>9s}")
    for name, r in rate.items():
        print(f"{name:28s} {r:10,.0f} {r / rate['bare']:8.2f} {r / rate['loader']:9.2f}")

    data_loader = median_time(lambda: loader_batches_only(surveys["des"], n), args.rounds)
    data_rbda = median_time(lambda: rbda_batches_only(surveys, n), args.rounds)
    print(f"data path alone (no model): DataLoader {n / data_loader:,.0f} samples/s, "
          f"rbda gather {n / data_rbda:,.0f} samples/s ({data_loader / data_rbda:.0f}x)")

    infer = 20_000 / median_time(lambda: inference_seconds(surveys["des"], 20_000), args.rounds)
    epoch = {"baseline": 10_000 / rate["rbda"], "finetune": 10_000 / rate["rbda"], "mme": 10_000 / rate["rbda mme"]}
    print(f"\nvalidation inference: {infer:,.0f} stamps/s")
    print("seconds per 10,000-item epoch (float32): " + ", ".join(f"{k} {v:.2f}" for k, v in epoch.items()))
    # Baselines validate every epoch on the whole source validation part (10% of the survey).
    baseline_val = statistics.mean(SURVEY_SIZES.values()) * 0.1 / infer
    per_run = {"baseline": epoch["baseline"] + baseline_val, "finetune": epoch["finetune"], "mme": epoch["mme"]}
    hours = {m: STUDY_RUNS[m] * args.epochs_per_run * per_run[m] / 3600 for m in STUDY_RUNS}
    print(f"projected full study at {args.epochs_per_run} epochs per run, one process, this CPU: "
          + ", ".join(f"{STUDY_RUNS[m]} {m} {hours[m]:,.0f} h" for m in STUDY_RUNS)
          + f"; total {sum(hours.values()):,.0f} h = {sum(hours.values()) / 24:,.0f} days "
          f"(baseline epochs include validation on a mean validation part of "
          f"{statistics.mean(SURVEY_SIZES.values()) * 0.1:,.0f} stamps)")


if __name__ == "__main__":
    main()
