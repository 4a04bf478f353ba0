"""`rbda preprocess`: raw survey files -> preprocessed Parquet store (+ JSON report)."""

from __future__ import annotations

import argparse

from rbda.surveys import survey_argument


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "preprocess",
        help="read a survey's raw files, preprocess (crop 21x21, normalise, fill) and write Parquet",
        description=(
            "Read raw stamps in a survey's native layout (HiTS chunk pickles; DES srch/temp/diff GIF or "
            "FITS stamps plus autoscan_features CSV; ZTF ALeRCE pickle, dict or DataFrame form; ATLAS "
            "class folders of istamp/dstamp FITS or a pickle; any declared survey's layouts, e.g. the generic "
            "labelled-stamp .npz, docs/surveys.md), preprocess them as in docs/method.md section 2 "
            "and write one Parquet file. Inputs may be files or folders; the layout is detected unless "
            "--format names it."
        ),
    )
    p.add_argument("--survey", required=True, type=survey_argument, help="a declared survey (rbda --surveys FILE "
                                                                           "declares more)")
    p.add_argument("--input", required=True, nargs="+", metavar="PATH", help="raw files or folders")
    p.add_argument("--output", required=True, metavar="FILE.parquet")
    p.add_argument("--report", metavar="FILE.json", help="counts read/kept/dropped, invalid pixels, ...")
    p.add_argument("--format", help="raw layout, one of the survey's declared layouts (default: detected)")
    add_class_map_options(p)
    p.add_argument("--allow-count-mismatch", action="store_true",
                   help="accept read class counts equal to the published ones with real and bogus "
                        "swapped (a deliberately different data release); otherwise an error")
    p.add_argument("--log-every", type=float, default=30.0, metavar="S",
                   help="seconds between progress lines when not in a terminal (default 30)")
    return p


def add_class_map_options(p: argparse.ArgumentParser) -> None:
    """--real-classes/--bogus-classes: the raw class names labelled real and bogus (read by :func:`class_map_of`)."""
    p.add_argument("--real-classes", metavar="A,B", help="class names labelled real (default: the study's)")
    p.add_argument("--bogus-classes", metavar="C,D", help="class names labelled bogus (default: the study's)")


def _class_list(text: str | None, setting: str) -> list[str] | None:
    from rbda.errors import SettingError

    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise SettingError(setting, "a comma-separated list of class names", text)
    return names


def class_map_of(args: argparse.Namespace):
    """The ClassMap of --real-classes/--bogus-classes over the survey's declared one; None when neither is given."""
    from rbda.ingest.readers import ClassMap, default_class_map

    real = _class_list(args.real_classes, "real-classes")
    bogus = _class_list(args.bogus_classes, "bogus-classes")
    if real is None and bogus is None:
        return None
    default = default_class_map(args.survey)
    return ClassMap.of(real if real is not None else default.real, bogus if bogus is not None else default.bogus)


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs and inputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli)."""
    return {"outputs": {"--output": args.output, "--report": args.report}, "inputs": {"--input": args.input}}


def run(args: argparse.Namespace) -> int:
    from rbda.ingest.preprocess import convert_survey

    convert_survey(args.survey, args.input, args.output, args.report, args.format, class_map_of(args),
                   progress_log_every=args.log_every, allow_count_mismatch=args.allow_count_mismatch)
    return 0
