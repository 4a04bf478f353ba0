"""`rbda train`: train one model with one registered method (rbda.registry) and write its run JSON.

Several ``--lambda`` values train the lambdas as members of one job (rbda.learn.train.train_members):
``--metrics``, ``--model`` and ``--checkpoint`` then take one path per lambda, in the same order, and
each member writes exactly the files a run of that lambda alone writes."""

from __future__ import annotations

import argparse
from pathlib import Path

from rbda.errors import SettingError
from rbda.registry import METHODS, REGISTRY
from rbda.study import TRAINING_DEFAULTS, describe_bounds, option_dest, option_flag, training_option_fields
from rbda.surveys import survey_argument


def parse_data_spec(text: str) -> tuple[str, Path, Path]:
    """``SURVEY=DATA.parquet:SPLIT.npz`` -> (survey, parquet, split file)."""
    name, sep, files = text.partition("=")
    parquet, colon, split = files.rpartition(":")
    if not sep or not colon or not name or not parquet or not split:
        raise SettingError("--data", "SURVEY=DATA.parquet:SPLIT.npz", text)
    from rbda.surveys import declared_surveys

    if name not in declared_surveys():
        raise SettingError("--data", f"a declared survey's name among {', '.join(declared_surveys())}", name)
    return name, Path(parquet), Path(split)


def parse_data_specs(texts: list[str]) -> dict[str, tuple[Path, Path]]:
    specs: dict[str, tuple[Path, Path]] = {}
    for text in texts:
        name, parquet, split = parse_data_spec(text)
        if name in specs:
            raise SettingError("--data", f"each survey once; {name!r} is given twice")
        specs[name] = (parquet, split)
    return specs


def data_spec_paths(texts: list[str]) -> list[Path]:
    """The Parquet and split files of ``--data`` specs (unparsable ones are left to parse_data_specs)."""
    paths = []
    for text in texts:
        try:
            _, parquet, split = parse_data_spec(text)
        except SettingError:
            continue
        paths += [parquet, split]
    return paths


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli): the run JSON,
    the model and the checkpoint (read to resume, so it is an output here) against the data and the initial model."""
    outputs = {}
    for lam, metrics, model, checkpoint in _members(args):
        member = "" if lam is None else f" (lambda {lam:g})"
        outputs.update({f"--metrics{member}": metrics, f"--model{member}": model, f"--checkpoint{member}": checkpoint})
    return {"outputs": outputs, "inputs": {"--data": data_spec_paths(args.data), "--init-model": [args.init_model]}}


def _members(args: argparse.Namespace) -> list[tuple[float | None, Path, Path | None, Path]]:
    """(lambda, run JSON, model file or None, checkpoint) of each member of the job, in --lambda order;
    the checkpoint defaults to METRICS.ckpt beside the run JSON."""
    lams = args.lam or [None]
    if len(set(lams)) != len(lams):
        raise SettingError("--lambda", "distinct values (one member per lambda)", " ".join(map(str, lams)))
    for flag, paths in (("--metrics", args.metrics), ("--model", args.model), ("--checkpoint", args.checkpoint)):
        if paths is not None and len(paths) != len(lams):
            raise SettingError(flag, f"one path per --lambda value ({len(lams)}), in the same order",
                               " ".join(map(str, paths)))
    models = args.model or [None] * len(lams)
    checkpoints = args.checkpoint or [m.with_name(m.name + ".ckpt") for m in args.metrics]
    return list(zip(lams, args.metrics, models, checkpoints))


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train", help="train one model (baseline or an adaptation method) and write its run JSON",
        description="Train one model and evaluate it on test parts; see docs/architecture.md for the run JSON.",
    )
    p.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    p.add_argument("--source", required=True, type=survey_argument, help="source survey (a declared one)")
    p.add_argument("--target", type=survey_argument, help="target survey (adaptation methods)")
    p.add_argument("--data", action="append", default=[], metavar="SURVEY=DATA.parquet:SPLIT.npz",
                   help="a survey's preprocessed data and split; repeat per survey (a baseline is "
                        "evaluated on the test part of every survey given)")
    p.add_argument("--split", type=int, required=True, help="split number k")
    p.add_argument("--seed", type=int, required=True, help="the study's base seed")
    p.add_argument("--shots", type=int, help="labelled target items per class (adaptation methods)")
    p.add_argument("--lambda", dest="lam", type=float, nargs="+", metavar="LAMBDA",
                   help="the lambda of a lambda-grid method (" + ", ".join(m for m, d in REGISTRY.methods.items() if d.lambda_grid)
                        + "); other methods may weigh a loss of their own with it (their module says which); several "
                        "values train them as members of one job (one path per lambda in --metrics, --model, --checkpoint)")
    p.add_argument("--from-scratch", action="store_true",
                   help="st only: train a fresh network on source + target shots (no --init-model)")
    p.add_argument("--init-model", type=Path, help="baseline model file to start from (adaptation methods)")
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="run JSON to write (one per lambda)")
    p.add_argument("--model", type=Path, nargs="+", help="also write the best model here (one per lambda)")
    p.add_argument("--checkpoint", type=Path, nargs="+",
                   help="resumable checkpoint (one per lambda; default: METRICS.ckpt)")
    add_training_options(p)
    add_method_settings(p)
    return p


def method_setting_flags() -> dict[str, list]:
    """``{flag: [(method, Setting), ...]}``: each method's own settings (rbda.registry), by option."""
    flags: dict[str, list] = {}
    for declaration in REGISTRY.methods.values():
        for setting in declaration.settings:
            flags.setdefault(setting.flag, []).append((declaration.name, setting))
    return flags


def add_method_settings(p: argparse.ArgumentParser) -> None:
    """One option per setting a method declares (``--consistency-weight``), valid with that method only."""
    g = p.add_argument_group("method settings (each valid only with the methods named; default: the method's)")
    for flag, owners in method_setting_flags().items():
        first = owners[0][1]
        kind = (str if first.choices is not None else _boolean if isinstance(first.default, bool)
                else float if isinstance(first.default, float) else int if isinstance(first.default, int) else str)
        parts = [f"{method}: {s.help} ({'; '.join(filter(None, [s.bounds(), f'default {s.default}']))})"
                 for method, s in owners]
        g.add_argument(flag, dest=f"setting_{first.name}", type=kind, default=None, metavar="VALUE",
                       help="; ".join(parts))


def _boolean(text: str) -> bool:
    """``true``/``false`` (a method setting whose default is a boolean)."""
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"true or false expected, got {text!r}")
    return text.lower() == "true"


def method_settings_given(args: argparse.Namespace) -> dict:
    """The method settings given on the command line for ``--method``; an option of another method's
    setting is an error naming it."""
    settings = {}
    for flag, owners in method_setting_flags().items():
        value = getattr(args, f"setting_{owners[0][1].name}", None)
        if value is None:
            continue
        if args.method not in [method for method, _ in owners]:
            raise SettingError(flag, "only with --method " + " or ".join(method for method, _ in owners), value)
        settings[owners[0][1].name] = value
    return settings


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


def _run_spec(args: argparse.Namespace, lam: float | None):
    from rbda.learn.methods.base import RunSpec

    return RunSpec(method=args.method, source=args.source, target=args.target, split=args.split, seed=args.seed,
                   shots=args.shots, lam=lam, val_shots=args.val_shots, batch_size=args.batch_size,
                   model=args.backbone, beta=args.beta, from_scratch=args.from_scratch, task=args.task,
                   settings=method_settings_given(args))


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


def _write_outputs(metrics: Path, model_path: Path | None, record: dict, model) -> None:
    """The model (if asked for) and the run JSON; neither is left alone if the other fails."""
    from rbda.atomic import write_json
    from rbda.learn.models import save_model_file

    if model_path is not None:
        facts = {k: record[k] for k in ("method", "source", "target", "split", "shots", "lambda", "seed")}
        training = {k: record[k] for k in ("evaluations", "validation", "hyperparameters", "versions")}
        training["validation"] = {k: v for k, v in training["validation"].items() if k != "history"}
        save_model_file(model_path, model, facts, training)
    try:
        write_json(metrics, record)
    except BaseException:
        if model_path is not None:
            model_path.unlink(missing_ok=True)
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
    from rbda.learn.train import train_members

    method_cls = method_class(args.method)
    members = _members(args)
    specs = [_run_spec(args, lam) for lam, *_ in members]
    if specs[0].task == "multiclass" and args.model is not None:
        raise SettingError("--model", "no model file for --task multiclass (model files hold real/bogus "
                                      "classifiers, for fine-tuning, MME and `rbda predict`)", " ".join(map(str, args.model)))
    for spec in specs:
        method_cls.check_spec(spec)  # settings first, before any data is read
    config = _train_config(args)
    init_state, fingerprint_extra = _initial_model(method_cls, args)
    configure_torch(args.threads, args.deterministic)
    device = resolve_device(args.device)
    memory_format = resolve_memory_format(config.memory_format, device)  # read straight into that layout
    surveys = {name: load_survey_tensors(name, parquet, split_file, device, memory_format,
                                         task=args.task if name == args.source else "binary")
               for name, (parquet, split_file) in data.items()}
    methods = [method_cls(spec, surveys) for spec in specs]  # the members share the loaded surveys
    results = train_members(methods, config, init_state=init_state, checkpoints=[c for *_, c in members],
                            fingerprint_extra=fingerprint_extra)
    # every member's outputs, then every checkpoint: a job killed before its end resumes every member
    for method, result, (lam, metrics, model_path, _) in zip(methods, results, members, strict=True):
        record = run_record(method, config, result, evaluate_method(method, result.model),
                            confident_errors(method, result.model))
        _write_outputs(metrics, model_path, record, result.model)
        summary = ", ".join(f"{e['survey']} ({e['role']}) {e['bacc']:.4f}" for e in record["evaluations"])
        logging.getLogger("rbda.learn.train").info(
            "%s%s done in %.1f s, %d epochs (best %d): test BACC %s", args.method,
            "" if lam is None else f" lambda {lam}", result.wall_seconds, result.state.epoch,
            result.state.best_epoch, summary)
    for *_, checkpoint in members:
        checkpoint.unlink(missing_ok=True)
    return 0
