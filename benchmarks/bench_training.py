"""Training throughput: rbda's loop against a bare loop and a Dataset + DataLoader loop.

All train the study's baseline CNN (SGD, momentum 0.9, class-balanced
batches of 50) on the same in-memory synthetic stamps, in one process, with
the same thread count; they are timed in interleaved rounds and the median of
each is reported, with the ratios side by side:

* bare       -- preloaded tensors, ``randint`` indices, forward/backward/step:
                the practical limit of eager PyTorch for this model, in the
                standard (contiguous) layout and in channels-last;
* loader     -- a conventional ``Dataset`` whose ``__getitem__`` builds one
                item (NumPy slice -> tensor), a ``WeightedRandomSampler`` for
                class balance and a ``DataLoader`` collating batches of 50,
                each moved to the device;
* rbda       -- :func:`rbda.learn.train.train` with the baseline method (epoch
                planning, loss bookkeeping, per-epoch validation on 200
                items), with its default memory format (``auto``:
                channels-last on CPU, contiguous on CUDA), with each format
                forced, with bf16 autocast, and MME (two updates per
                iteration).

It also times the data path alone, one 10,000-item epoch, validation
inference, and projects the cost of the full study from them.

``--backbones`` times instead each backbone of :data:`rbda.study.BACKBONES`
(``training.model``) in rbda's loop (baseline method, default memory format,
interleaved rounds): seconds per 10,000-sample epoch and inference stamps/s,
with the ratios to the study CNN side by side (EarlySN reports about 3.4x per
epoch for its rotation-invariant network).

``--methods`` times instead every training method of :data:`rbda.study.METHODS`
(baseline, finetune, mme, st, ent, dann, mmefm) in rbda's loop, interleaved:
seconds per 10,000-item epoch (an epoch is 10,000 *labelled* items; MME-like
methods make a second update per iteration on an unlabelled batch) with the
ratio to the baseline, and projects the cost of the extended study (every
method on the published config's grid: ``config.yaml``'s surveys, splits,
shots and lambdas) from them.

    .venv/bin/python benchmarks/bench_training.py [--threads 1] [--rounds 3] [--items 5000] [--device cpu] [--backbones | --methods]

With one thread on CPU the loops are timed by process CPU time, so the
figures hold on a machine shared with other jobs; with several threads or on
CUDA by wall time (CUDA synchronised before each reading).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F

from rbda.learn.evaluate import predict
from rbda.learn.methods import method_class
from rbda.learn.data import SurveyTensors
from rbda.learn.methods.base import RunSpec
from rbda.learn.models import StampClassifier
from rbda.ingest.splits import Split
from rbda.device import apply_memory_format, configure_torch, resolve_device, resolve_memory_format
from rbda.study import BACKBONES, LAMBDA_METHODS, METHODS
from rbda.learn.train import TrainConfig, train

BATCH = 50
DEVICE = torch.device("cpu")
# With one thread, process CPU time measures the work itself and is nearly
# insensitive to other jobs sharing the machine (main() switches to wall time
# for several threads, whose CPU times add up, and for CUDA).
_timer = time.process_time


def clock() -> float:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return _timer()

# The published study: 4 surveys x 10 splits baselines; 12 pairs x 5 shots x 10 splits FT;
# the same for MME per lambda (thesis grid: 8 lambdas).
STUDY_RUNS = {"baseline": 40, "finetune": 600, "mme": 600 * 8}
SURVEY_SIZES = {"hits": 1_437_684, "des": 898_963, "ztf": 35_795, "atlas": 3_678}  # docs/method.md section 1


def synthetic_survey(name: str, n: int, seed: int) -> SurveyTensors:
    """Random stamps and labels on DEVICE; a split with 200 validation and 200 test rows."""
    rng = np.random.default_rng(seed)
    stamps = rng.normal(size=(n, 3, 21, 21)).astype(np.float32)
    labels = (rng.random(n) < 0.3).astype(np.int8)  # imbalanced, so class balance matters
    order = rng.permutation(n)
    split = Split(train=np.sort(order[400:]), val=np.sort(order[:200]), test=np.sort(order[200:400]),
                  n_rows=n, seed=seed)
    return SurveyTensors(name, torch.from_numpy(stamps).to(DEVICE), torch.from_numpy(labels.astype(np.int64)).to(DEVICE),
                      labels, split)


def bare_loop(survey: SurveyTensors, items: int, channels_last: bool = False) -> float:
    """Seconds to train ``items`` samples with the bare loop."""
    torch.manual_seed(0)
    model = StampClassifier("linear").train().to(DEVICE)
    x, y = survey.stamps, survey.labels
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_rows = torch.from_numpy(survey.split.train).to(DEVICE)
    start = clock()
    for _ in range(items // BATCH):
        rows = train_rows[torch.randint(0, train_rows.numel(), (BATCH,), device=DEVICE)]
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


def balanced_loader(survey: SurveyTensors, items: int) -> torch.utils.data.DataLoader:
    """Class-balanced batches of 50 built item by item (``WeightedRandomSampler``)."""
    rows = survey.split.train
    labels = survey.labels_np[rows]
    class_weight = 1.0 / np.bincount(labels, minlength=2)
    sampler = torch.utils.data.WeightedRandomSampler(class_weight[labels], num_samples=items, replacement=True)
    return torch.utils.data.DataLoader(StampDataset(survey.stamps.cpu().numpy(), survey.labels_np, rows),
                                       batch_size=BATCH, sampler=sampler, drop_last=True)


def loader_loop(survey: SurveyTensors, items: int) -> float:
    torch.manual_seed(0)
    model = StampClassifier("linear").train().to(DEVICE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = balanced_loader(survey, items)
    start = clock()
    for x, y in loader:
        x, y = x.to(DEVICE), y.to(DEVICE)
        loss = F.cross_entropy(model(x), y.long())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return clock() - start


def loader_batches_only(survey: SurveyTensors, items: int) -> float:
    """Seconds to produce ``items`` samples' batches with the DataLoader, no model."""
    loader = balanced_loader(survey, items)
    start = clock()
    for x, y in loader:
        x, y = x.to(DEVICE), y.to(DEVICE)
    return clock() - start


def rbda_batches_only(surveys: dict, items: int) -> float:
    """Seconds to plan and gather ``items`` samples' batches as rbda's loop does, no model."""
    method = method_class("baseline")(RunSpec("baseline", "des", None, 0, seed=1), surveys)
    generator = torch.Generator(device=DEVICE)
    start = clock()
    plan = method.plan_epoch(items // BATCH, generator)
    for i in range(items // BATCH):
        method.source.batch(plan["source"][i])
    return clock() - start


def rbda_loop(surveys: dict, method: str, items: int, init_state=None, backbone: str = "study_cnn",
              **options) -> float:
    """Seconds for :func:`rbda.learn.train.train` to run one epoch of ``items`` samples."""
    if method == "baseline":
        spec = RunSpec("baseline", "des", None, 0, seed=1, model=backbone)
    else:
        spec = RunSpec(method, "des", "hits", 0, seed=1, shots=40, model=backbone,
                       lam=0.1 if method in LAMBDA_METHODS else None)
    config = TrainConfig(epoch_size=items, max_epochs=1, patience=10, **options)
    start = clock()
    train(method_class(method)(spec, surveys), config, init_state=init_state, progress_stream=io.StringIO())
    return clock() - start


def inference_seconds(survey: SurveyTensors, items: int, memory_format: str, backbone: str = "study_cnn") -> float:
    model = apply_memory_format(memory_format, StampClassifier("linear", backbone=backbone).to(DEVICE), [survey])
    rows = torch.from_numpy(np.resize(survey.split.train, items)).to(DEVICE)
    start = clock()
    predict(model, survey.stamps, rows)
    return clock() - start


def median_time(fn, rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


def fresh_surveys() -> dict:
    """A source and a target; rbda's loop converts their stamps' layout in place, so each variant gets its own."""
    return {"des": synthetic_survey("des", 20_000, 1), "hits": synthetic_survey("hits", 20_000, 2)}


def compare_backbones(args: argparse.Namespace, default_format: str) -> None:
    """Seconds per 10,000-sample epoch and inference stamps/s of every backbone, side by side."""
    surveys = {b: fresh_surveys() for b in BACKBONES}
    n = args.items
    for backbone in BACKBONES:  # warm-up
        rbda_loop(surveys[backbone], "baseline", min(n, 500), backbone=backbone)
    timings: dict[str, list[float]] = {b: [] for b in BACKBONES}
    infer: dict[str, list[float]] = {b: [] for b in BACKBONES}
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits all alike
        for backbone in BACKBONES:
            timings[backbone].append(rbda_loop(surveys[backbone], "baseline", n, backbone=backbone))
            infer[backbone].append(inference_seconds(surveys[backbone]["des"], 10_000, default_format, backbone))
    epoch = {b: 10_000 * statistics.median(t) / n for b, t in timings.items()}
    stamps = {b: 10_000 / statistics.median(t) for b, t in infer.items()}
    timed_by = "process CPU time" if _timer is time.process_time else "wall time"
    print(f"torch {torch.__version__}, {DEVICE.type}, {args.threads} thread(s), batch {BATCH}, rbda.learn.train baseline, "
          f"{default_format}, float32, {n} samples x {args.rounds} rounds (median), timed by {timed_by}")
    print(f"{'backbone':10s} {'parameters':>10s} {'s/10k epoch':>11s} {'x study_cnn':>11s} "
          f"{'infer stamps/s':>14s} {'x study_cnn':>11s}")
    for b in BACKBONES:
        params = sum(p.numel() for p in StampClassifier("linear", backbone=b).parameters())
        print(f"{b:10s} {params:10,d} {epoch[b]:11.2f} {epoch[b] / epoch['study_cnn']:11.2f} "
              f"{stamps[b]:14,.0f} {stamps[b] / stamps['study_cnn']:11.2f}")


def study_grid() -> dict:
    """Runs per method of the extended study on the published config's grid (config.yaml)."""
    from pathlib import Path

    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    n_surveys, splits = len(config["surveys"]), config["splits"]
    pairs = n_surveys * (n_surveys - 1) if config["pairs"] is None else len(config["pairs"])
    per_pair = pairs * len(config["shots"]) * splits
    runs = {m: per_pair * (len(config["lambdas"]) if m in LAMBDA_METHODS else 1) for m in METHODS}
    runs["baseline"] = n_surveys * splits
    return {"runs": runs, "describe": f"{n_surveys} surveys, {pairs} pairs, {len(config['shots'])} shot counts, "
                                      f"{splits} splits, {len(config['lambdas'])} lambdas"}


def compare_methods(args: argparse.Namespace, default_format: str) -> None:
    """Seconds per 10,000-item epoch of every method, side by side, and the extended study's projected cost."""
    surveys = {m: fresh_surveys() for m in METHODS}
    baseline_state = StampClassifier("linear").state_dict()
    init = {m: None if m == "baseline" else baseline_state for m in METHODS}
    n = args.items
    for m in METHODS:  # warm-up
        rbda_loop(surveys[m], m, min(n, 500), init_state=init[m])
    timings: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits all alike
        for m in METHODS:
            timings[m].append(rbda_loop(surveys[m], m, n, init_state=init[m]))
    epoch = {m: 10_000 * statistics.median(t) / n for m, t in timings.items()}
    timed_by = "process CPU time" if _timer is time.process_time else "wall time"
    print(f"torch {torch.__version__}, {DEVICE.type}, {args.threads} thread(s), batch {BATCH}, study_cnn, "
          f"{default_format}, float32, {n} labelled samples x {args.rounds} rounds (median), timed by {timed_by}")
    print(f"{'method':10s} {'s/10k epoch':>11s} {'x baseline':>10s}")
    for m in METHODS:
        print(f"{m:10s} {epoch[m]:11.2f} {epoch[m] / epoch['baseline']:10.2f}")
    grid = study_grid()
    infer = 20_000 / median_time(lambda: inference_seconds(surveys["baseline"]["des"], 20_000, default_format),
                                 args.rounds)
    baseline_val = statistics.mean(SURVEY_SIZES.values()) * 0.1 / infer  # per epoch, on the whole validation part
    hours = {m: grid["runs"][m] * args.epochs_per_run * (epoch[m] + (baseline_val if m == "baseline" else 0)) / 3600
             for m in METHODS}
    print(f"projected extended study ({grid['describe']}) at {args.epochs_per_run} epochs per run, one process, "
          f"this {DEVICE.type}:")
    for m in METHODS:
        print(f"  {m:10s} {grid['runs'][m]:6,d} runs {hours[m]:9,.0f} h")
    total = sum(hours.values())
    study = hours["baseline"] + hours["finetune"] + hours["mme"]
    print(f"  total {total:,.0f} h = {total / 24:,.0f} days (the published study's methods alone: {study:,.0f} h, "
          f"x{total / study:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=5000, help="training samples per timed run")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--epochs-per-run", type=int, default=150,
                        help="assumed epochs per run for the projection (patience 100 => at least 101)")
    parser.add_argument("--backbones", action="store_true",
                        help="compare the backbones (training.model) instead of the loops")
    parser.add_argument("--methods", action="store_true",
                        help="compare the training methods (seconds per epoch) and project the extended study")
    args = parser.parse_args()
    global _timer, DEVICE
    DEVICE = resolve_device(args.device)
    if args.threads > 1 or DEVICE.type == "cuda":
        _timer = time.perf_counter
    configure_torch(args.threads, deterministic=False)
    default_format = resolve_memory_format("auto", DEVICE)
    if args.backbones:
        compare_backbones(args, default_format)
        return
    if args.methods:
        compare_methods(args, default_format)
        return
    surveys = {fmt: fresh_surveys() for fmt in ("auto", "channels_last", "contiguous", "bf16", "mme")}
    plain = surveys["contiguous"]["des"]  # the bare and DataLoader loops read it, never converted
    baseline_state = StampClassifier("linear").state_dict()
    n = args.items

    bare_loop(plain, 1000)  # warm-up (allocator, kernels, CUDA context)
    bare_loop(plain, 1000, channels_last=True)
    loops = {
        "bare": lambda: bare_loop(plain, n),
        "bare channels-last": lambda: bare_loop(plain, n, channels_last=True),
        "loader": lambda: loader_loop(plain, n),
        f"rbda (auto: {default_format})": lambda: rbda_loop(surveys["auto"], "baseline", n),
        "rbda channels-last": lambda: rbda_loop(surveys["channels_last"], "baseline", n, memory_format="channels_last"),
        "rbda contiguous": lambda: rbda_loop(surveys["contiguous"], "baseline", n, memory_format="contiguous"),
        "rbda auto + bf16": lambda: rbda_loop(surveys["bf16"], "baseline", n, bf16=True),
        "rbda mme (auto)": lambda: rbda_loop(surveys["mme"], "mme", n, init_state=baseline_state),
    }
    timings: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits all alike
        for name, loop in loops.items():
            timings[name].append(loop())
    rate = {k: n / statistics.median(v) for k, v in timings.items()}
    rbda_default = rate[f"rbda (auto: {default_format})"]

    timed_by = "process CPU time" if _timer is time.process_time else "wall time"
    print(f"torch {torch.__version__}, {DEVICE.type}, {args.threads} thread(s), batch {BATCH}, {n} samples x "
          f"{args.rounds} rounds (median), timed by {timed_by}")
    print(f"{'loop':32s} {'samples/s':>10s} {'vs bare':>8s} {'vs bare CL':>10s} {'vs loader':>9s}")
    for name, r in rate.items():
        print(f"{name:32s} {r:10,.0f} {r / rate['bare']:8.2f} {r / rate['bare channels-last']:10.2f} "
              f"{r / rate['loader']:9.2f}")

    data_loader = median_time(lambda: loader_batches_only(plain, n), args.rounds)
    data_rbda = median_time(lambda: rbda_batches_only(surveys["contiguous"], n), args.rounds)
    print(f"data path alone (no model): DataLoader {n / data_loader:,.0f} samples/s, "
          f"rbda gather {n / data_rbda:,.0f} samples/s ({data_loader / data_rbda:.1f}x)")

    infer = {fmt: 20_000 / median_time(lambda: inference_seconds(surveys[fmt]["des"], 20_000, fmt), args.rounds)
             for fmt in ("contiguous", "channels_last")}
    epoch = {"baseline": 10_000 / rbda_default, "finetune": 10_000 / rbda_default, "mme": 10_000 / rate["rbda mme (auto)"]}
    print("\nvalidation inference (batches of 512): " + ", ".join(f"{fmt} {r:,.0f} stamps/s" for fmt, r in infer.items()))
    print(f"seconds per 10,000-item epoch (float32, {default_format}): " + ", ".join(f"{k} {v:.2f}" for k, v in epoch.items()))
    # Baselines validate every epoch on the whole source validation part (10% of the survey).
    baseline_val = statistics.mean(SURVEY_SIZES.values()) * 0.1 / infer[default_format]
    per_run = {"baseline": epoch["baseline"] + baseline_val, "finetune": epoch["finetune"], "mme": epoch["mme"]}
    hours = {m: STUDY_RUNS[m] * args.epochs_per_run * per_run[m] / 3600 for m in STUDY_RUNS}
    print(f"projected full study at {args.epochs_per_run} epochs per run, one process, this {DEVICE.type}: "
          + ", ".join(f"{STUDY_RUNS[m]} {m} {hours[m]:,.0f} h" for m in STUDY_RUNS)
          + f"; total {sum(hours.values()):,.0f} h = {sum(hours.values()) / 24:,.0f} days "
          f"(baseline epochs include validation on a mean validation part of "
          f"{statistics.mean(SURVEY_SIZES.values()) * 0.1:,.0f} stamps)")


if __name__ == "__main__":
    main()
