"""`rbda predict`: score alert packets, preprocessed surveys or raw survey files with a trained model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rbda.surveys import survey_argument


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from rbda.alerts.predict import DEFAULT_BATCH_SIZE, DEFAULT_THRESHOLD

    p = sub.add_parser(
        "predict", help="score alerts (Avro packets, preprocessed Parquet or raw survey files) with a model",
        description=(
            "Score every alert of the inputs with a model written by `rbda train --model`: p_real (the "
            "softmax probability of 'real') and the label at --threshold, with the alert's ids, the packet "
            "layout that read it, the broker's own scores (ZTF's rb/drb, Rubin's reliability) and the model's "
            "identity. Inputs are Avro alert packets (files or folders; ZTF, ATLAS, Rubin/LSST and DECam "
            "layouts are shipped, others declared with --packet-layouts), preprocessed survey Parquet files, "
            "or raw survey files (with --survey, any declared survey). Raw stamps are preprocessed as for "
            "training. `rbda predict --describe MODEL.pt` prints what a model file records (training facts, "
            "test metrics, preprocessing version, weights hash)."),
    )
    p.add_argument("--model", type=Path, help="model file written by `rbda train --model`")
    p.add_argument("--describe", type=Path, metavar="MODEL.pt", help="print the model file's description and exit")
    p.add_argument("--input", nargs="+", type=Path, metavar="PATH", help="alert packets, Parquet or raw files/folders")
    p.add_argument("--output", type=Path, metavar="SCORES.{parquet,csv}", help="scores to write")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"p_real at or above which an alert is real (default {DEFAULT_THRESHOLD})")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"stamps per inference batch (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--survey", type=survey_argument,
                   help="the inputs are raw files of this declared survey's layouts")
    p.add_argument("--format", help="raw layout with --survey, one of its declared layouts (default: detected)")
    p.add_argument("--packet-layouts", nargs="+", type=Path, default=[], metavar="LAYOUTS.yaml",
                   help="YAML files declaring further alert packet layouts (docs/surveys.md), tried before the "
                        "shipped ZTF, ATLAS, Rubin and DECam ones")
    p.add_argument("--skip-bad", action="store_true",
                   help="list bad packets/stamps in SCORES.bad.csv (file, candid, reason) and go on")
    p.add_argument("--log-every", type=float, default=30.0, metavar="S",
                   help="seconds between progress lines when not in a terminal (default 30)")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli): the scores and
    their bad list against the inputs (label files are inputs or inside input folders) and the model."""
    if args.describe is not None or args.output is None:
        return {"outputs": {}, "inputs": {}}
    from rbda.alerts.predict import bad_list_path

    return {"outputs": {"--output": args.output, "--output's bad list": bad_list_path(args.output)},
            "inputs": {"--input": args.input or [], "--model": [args.model],
                       "--packet-layouts": args.packet_layouts}}


def run(args: argparse.Namespace) -> int:
    from rbda.errors import SettingError

    if args.describe is not None:
        from rbda.alerts.predict import describe_model

        print(json.dumps(describe_model(args.describe), indent=2, sort_keys=True))
        return 0
    for name in ("model", "input", "output"):
        if getattr(args, name) is None:
            raise SettingError(name, f"--{name} (or --describe MODEL.pt)")
    if args.format is not None and args.survey is None:
        raise SettingError("format", "--survey with --format (the raw layout of that survey)", args.format)

    from rbda.alerts.predict import predict_files

    predict_files(args.model, args.input, args.output, threshold=args.threshold, batch_size=args.batch_size,
                  device=args.device, survey=args.survey, fmt=args.format, skip_bad=args.skip_bad,
                  threads=args.threads, log_every=args.log_every, packet_layouts=args.packet_layouts)
    return 0
