"""`rbda evaluate`: balanced accuracy and confusion counts of a saved model."""

from __future__ import annotations

import argparse
from pathlib import Path

from rbda.study import DEVICES, MEMORY_FORMATS, TRAINING_DEFAULTS

EVALUATION_SCHEMA = "rbda.evaluation/1"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="evaluate a saved model on a part of one or more surveys")
    p.add_argument("--model", type=Path, required=True, help="model file written by `rbda train --model`")
    p.add_argument("--data", action="append", default=[], required=True, metavar="SURVEY=DATA.parquet:SPLIT.npz")
    p.add_argument("--part", default="test", choices=("train", "val", "test"))
    p.add_argument("--output", type=Path, required=True, help="evaluation JSON to write")
    p.add_argument("--device", default=TRAINING_DEFAULTS.device, choices=DEVICES)
    p.add_argument("--threads", type=int)
    p.add_argument("--memory-format", default=TRAINING_DEFAULTS.memory_format, choices=MEMORY_FORMATS,
                   help="as for `rbda train`; auto: channels_last on CPU (about 2x faster inference here)")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli)."""
    from rbda.commands.train import data_spec_paths

    return {"outputs": {"--output": args.output},
            "inputs": {"--model": [args.model], "--data": data_spec_paths(args.data)}}


def run(args: argparse.Namespace) -> int:
    from rbda.commands.train import parse_data_specs

    data = parse_data_specs(args.data)

    from rbda.atomic import write_json
    from rbda.learn.evaluate import evaluate_part
    from rbda.learn.models import load_model_file, model_from_payload
    from rbda.learn.data import load_survey_tensors
    from rbda.device import apply_memory_format, configure_torch, resolve_device, resolve_memory_format
    from rbda.learn.records import versions

    payload = load_model_file(args.model)
    configure_torch(args.threads, deterministic=False)
    device = resolve_device(args.device)
    memory_format = resolve_memory_format(args.memory_format, device)
    model = apply_memory_format(memory_format, model_from_payload(payload).to(device), surveys=[])
    facts = payload.get("facts", {})
    evaluations = []
    for name, (parquet, split_file) in data.items():
        survey = load_survey_tensors(name, parquet, split_file, device, memory_format)  # read in that layout
        role = ("source" if name == facts.get("source") else
                "target" if name == facts.get("target") else "other")
        evaluations.append({"survey": name, "role": role, "part": args.part,
                            **evaluate_part(model, survey, args.part)})
    write_json(args.output, {"schema": EVALUATION_SCHEMA, "model": str(args.model), "model_facts": facts,
                             "evaluations": evaluations, "device": device.type, "memory_format": memory_format,
                             "versions": versions()})
    return 0
