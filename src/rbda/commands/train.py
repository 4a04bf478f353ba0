"""`rbda train`: train a baseline, fine-tune or MME model and write its run JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from rbda.errors import SettingError
from rbda.study import (METHODS, SURVEYS, TRAINING_DEFAULTS, describe_bounds, option_dest, option_flag,
                        training_option_fields)


def parse_data_spec(text: str) -> tuple[str, Path, Path]:
    """``SURVEY=DATA.parquet:SPLIT.npz`` -> (survey, parquet, split file)."""
    name, sep, files = text.partition("=")
    parquet, colon, split = files.rpartition(":")
    if not sep or not colon or not name or not parquet or not split:
        raise SettingError("--data", "SURVEY=DATA.parquet:SPLIT.npz", text)
    if name not in SURVEYS:
        raise SettingError("--data", f"a survey name among {', '.join(SURVEYS)}", name)
    return name, Path(parquet), Path(split)


def parse_data_specs(texts: list[str]) -> dict[str, tuple[Path, Path]]:
    specs: dict[str, tuple[Path, Path]] = {}
    for text in texts:
        name, parquet, split = parse_data_spec(text)
        if name in specs:
            raise SettingError("--data", f"each survey once; {name!r} is given twice")
        specs[name] = (parquet, split)
    return specs


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train", help="train one model (baseline or an adaptation method) and write its run JSON",
        description="Train one model and evaluate it on test parts; see docs/architecture.md for the run JSON.",
    )
    p.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    p.add_argument("--source", required=True, choices=SURVEYS, help="source survey")
    p.add_argument("--target", choices=SURVEYS, help="target survey (adaptation methods)")
    p.add_argument("--data", action="append", default=[], metavar="SURVEY=DATA.parquet:SPLIT.npz",
                   help="a survey's preprocessed data and split; repeat per survey (a baseline is "
                        "evaluated on the test part of every survey given)")
    p.add_argument("--split", type=int, required=True, help="split number k")
    p.add_argument("--seed", type=int, required=True, help="the study's base seed")
    p.add_argument("--shots", type=int, help="labelled target items per class (adaptation methods)")
    p.add_argument("--lambda", dest="lam", type=float,
                   help="entropy weight (mme, ent); domain-loss weight (dann, default 1)")
    p.add_argument("--from-scratch", action="store_true",
                   help="st only: train a fresh network on source + target shots (no --init-model)")
    p.add_argument("--init-model", type=Path, help="baseline model file to start from (adaptation methods)")
    p.add_argument("--metrics", type=Path, required=True, help="run JSON to write")
    p.add_argument("--model", type=Path, help="also write the best model here")
    p.add_argument("--checkpoint", type=Path, help="resumable checkpoint (default: METRICS.ckpt)")
    add_training_options(p)
    return p


def add_training_options(p: argparse.ArgumentParser) -> None:
    """One option per field of :class:`rbda.study.TrainingOptions`, with its default and help."""
    g = p.add_argument_group("training options (defaults: the study's)")
    for f in training_option_fields():
        flag, dest = option_flag(f), option_dest(f)
        meta, default = f.metadata, getattr(TRAINING_DEFAULTS, f.name)
        bounds = describe_bounds(f.name)
        help_text = meta["help"] + (f" ({bounds})" if bounds else "")
        if isinstance(default, bool):
            g.add_argument(flag, dest=dest, action="store_true", help=help_text)
        elif meta["choices"] is not None:
            g.add_argument(flag, dest=dest, default=default, choices=meta["choices"],
                           help=help_text + f"; default {default}")
        else:
            kind = float if isinstance(default, float) else int
            g.add_argument(flag, dest=dest, type=kind, default=default, help=help_text + ("" if default is None else f"; default {default}"))


def _run_spec(args: argparse.Namespace):
    from rbda.learn.methods.base import RunSpec

    return RunSpec(method=args.method, source=args.source, target=args.target, split=args.split, seed=args.seed,
                   shots=args.shots, lam=args.lam, val_shots=args.val_shots, batch_size=args.batch_size,
                   model=args.backbone, beta=args.beta, from_scratch=args.from_scratch, task=args.task,
                   tau=args.pseudo_label_threshold, mu=args.consistency_weight,
                   ramp_iterations=args.reversal_ramp_iterations,
                   strong_shift=args.strong_view_shift, frozen_bn=args.frozen_batch_norm)


def _train_config(args: argparse.Namespace):
    from dataclasses import fields

    from rbda.learn.train import TrainConfig

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    config.check()
    return config


def _initial_model(method_cls, args: argparse.Namespace) -> tuple[dict | None, dict]:
    """The baseline weights a method starts from, and the file's digest (part of the checkpoint fingerprint)."""
    import hashlib

    from rbda.errors import InputFileError, RbdaError
    from rbda.learn.models import load_model_file, model_from_payload

    needs_init_model = method_cls.needs_init_model and not args.from_scratch
    if args.init_model is not None and not needs_init_model:
        raise SettingError("--init-model", f"no initial model for method {args.method!r} (it trains from scratch)")
    if not needs_init_model:
        return None, {}
    if args.init_model is None:
        raise SettingError("--init-model", f"the (source, split) baseline model file for method {args.method!r}")
    payload = load_model_file(args.init_model, expect_head="linear", expect_backbone=args.backbone)
    try:  # the file's weights must build its own network (a file of another architecture fails here)
        model_from_payload(payload)
    except RbdaError as exc:
        raise InputFileError(args.init_model, f"a baseline model file whose weights fit its network ({exc})") from None
    return payload["state_dict"], {"init_model_sha256": hashlib.sha256(args.init_model.read_bytes()).hexdigest()}


def _write_outputs(args: argparse.Namespace, record: dict, model) -> None:
    """The model (if asked for) and the run JSON; neither is left alone if the other fails."""
    from rbda.atomic import write_json
    from rbda.learn.models import save_model_file

    if args.model is not None:
        facts = {k: record[k] for k in ("method", "source", "target", "split", "shots", "lambda", "seed")}
        training = {k: record[k] for k in ("evaluations", "validation", "hyperparameters", "versions")}
        training["validation"] = {k: v for k, v in training["validation"].items() if k != "history"}
        save_model_file(args.model, model, facts, training)
    try:
        write_json(args.metrics, record)
    except BaseException:
        if args.model is not None:
            args.model.unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    data = parse_data_specs(args.data)
    for survey, role in ((args.source, "source"), (args.target, "target")):
        if survey is not None and survey not in data:
            raise SettingError("--data", f"data for the {role} survey {survey!r} (--data {survey}=DATA.parquet:SPLIT.npz)")

    # Heavy imports only now: `rbda --help` and the data commands stay fast.
    import logging

    from rbda.learn.data import load_survey_tensors
    from rbda.device import configure_torch, resolve_device, resolve_memory_format
    from rbda.learn.evaluate import confident_errors, evaluate_method
    from rbda.learn.methods import method_class
    from rbda.learn.records import run_record
    from rbda.learn.train import train

    method_cls = method_class(args.method)
    spec = _run_spec(args)
    if spec.task == "multiclass" and args.model is not None:
        raise SettingError("--model", "no model file for --task multiclass (model files hold real/bogus "
                                      "classifiers, for fine-tuning, MME and `rbda predict`)", str(args.model))
    method_cls.check_spec(spec)  # settings first, before any data is read
    config = _train_config(args)
    init_state, fingerprint_extra = _initial_model(method_cls, args)
    configure_torch(args.threads, args.deterministic)
    device = resolve_device(args.device)
    memory_format = resolve_memory_format(config.memory_format, device)  # read straight into that layout
    surveys = {name: load_survey_tensors(name, parquet, split_file, device, memory_format,
                                         task=args.task if name == args.source else "binary")
               for name, (parquet, split_file) in data.items()}
    method = method_cls(spec, surveys)
    checkpoint = args.checkpoint or args.metrics.with_name(args.metrics.name + ".ckpt")
    result = train(method, config, init_state=init_state, checkpoint=checkpoint, fingerprint_extra=fingerprint_extra)
    record = run_record(method, config, result, evaluate_method(method, result.model),
                        confident_errors(method, result.model))
    _write_outputs(args, record, result.model)
    checkpoint.unlink(missing_ok=True)
    summary = ", ".join(f"{e['survey']} ({e['role']}) {e['bacc']:.4f}" for e in record["evaluations"])
    logging.getLogger("rbda.learn.train").info(
        "%s done in %.1f s, %d epochs (best %d): test BACC %s", args.method,
        result.wall_seconds, result.state.epoch, result.state.best_epoch, summary)
    return 0
