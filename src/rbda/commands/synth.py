"""`rbda synth`: write a synthetic survey in its native raw layout."""

from __future__ import annotations

import argparse

from rbda.surveys import survey_argument


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "synth",
        help="write a synthetic survey in its native raw layout (read back by rbda preprocess)",
        description=(
            "Simulate N alert triplets (real: a point source; bogus: the survey's typical artefacts) "
            "and write them as the survey's raw files: HiTS chunk pickles, DES GIF/FITS stamps + "
            "autoscan CSV, ZTF ALeRCE DataFrame/dict pickle, ATLAS class pickle or class folders."
        ),
    )
    p.add_argument("--survey", required=True, type=survey_argument,
                   help="a study survey, or a declared one with a synthetic part (written as stamps_npz)")
    p.add_argument("--n", required=True, type=int, help="number of alerts")
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced if an earlier synth output)")
    p.add_argument("--layout", help="hits: chunks; des: gif|fits; ztf: dataframe|dict; atlas: pickle|folder "
                                    "(default: the first)")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """What `rbda.atomic.check_outputs` checks before the work: synth reads no file; its --out
    folder (replaced only if an earlier synth output) must not be a file."""
    return {"outputs": {}, "inputs": {}, "folders": {"--out": args.out}}


def run(args: argparse.Namespace) -> int:
    import logging

    from rbda.ingest.synth import synthesize

    manifest = synthesize(args.survey, args.n, args.seed, args.out, args.layout)
    logging.getLogger("rbda.ingest.synth").info(
        "%s: %d alerts (%s) written to %s as %s", args.survey, args.n,
        ", ".join(f"{k} {v}" for k, v in manifest["classes"].items()), args.out, manifest["layout"])
    return 0
