"""`rbda packets`: write a survey's labelled stamps as alert packets of a declared layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from rbda.commands.preprocess import add_class_map_options, class_map_of
from rbda.surveys import survey_argument


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "packets", help="write a survey's stamps as alert packets of a declared layout, one per file",
        description=(
            "Read a survey's raw stamps (any declared survey and raw layout, as rbda preprocess reads them) "
            "and write each as one alert packet file of a declared packet layout (Rubin's Confluent-framed "
            "records, ZTF's, ATLAS's or DECam's Avro files, or one from --packet-layouts), with truth.csv "
            "(packet id, file, the survey's id, class, label), for `rbda predict` to score as a broker "
            "would send them. Stamps must have the layout's size."),
    )
    p.add_argument("--survey", required=True, type=survey_argument, help="the declared survey of the inputs")
    p.add_argument("--input", required=True, nargs="+", type=Path, metavar="PATH",
                   help="the survey's raw files or folders")
    p.add_argument("--format", help="raw layout, one of the survey's declared layouts (default: detected)")
    add_class_map_options(p)  # truth.csv labels the stamps as preprocessing does
    p.add_argument("--layout", required=True, help="packet layout name (rubin, ztf, atlas, decam or a declared one)")
    p.add_argument("--packet-layouts", nargs="+", type=Path, default=[], metavar="LAYOUTS.yaml",
                   help="YAML files declaring further packet layouts (docs/surveys.md)")
    p.add_argument("--schema-id", type=int, help="(Confluent layouts) the schema id to write (default: the newest)")
    p.add_argument("--limit", type=int, help="write at most this many packets (default: every stamp)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output folder (replaced only if an earlier rbda packets output)")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """The --out folder must not be, hold or be inside an input (checked by rbda.atomic.check_outputs and run)."""
    return {"outputs": {}, "inputs": {"--input": args.input, "--packet-layouts": args.packet_layouts},
            "folders": {"--out": args.out}}


def run(args: argparse.Namespace) -> int:
    import logging

    from rbda.alerts.layouts import load_layouts
    from rbda.alerts.writer import write_packets
    from rbda.errors import SettingError
    from rbda.ingest.readers import open_reader

    out = args.out.resolve()
    for path in args.input:
        if out == path.resolve() or out in path.resolve().parents or path.resolve() in out.parents:
            raise SettingError("--out", f"a folder apart from the input {str(path)!r} (replacing it would "
                                        "lose the input)", str(args.out))
    if args.limit is not None and args.limit < 1:
        raise SettingError("--limit", "a positive number of packets", args.limit)
    layouts = {layout.name: layout for layout in load_layouts(args.packet_layouts)}
    if args.layout not in layouts:
        raise SettingError("--layout", f"a declared packet layout ({', '.join(sorted(layouts))})", args.layout)
    reader = open_reader(args.survey, args.input, args.format, class_map_of(args))
    summary = write_packets(reader.batches(), layouts[args.layout], args.out, args.schema_id, args.limit,
                            inputs=", ".join(map(str, args.input)))
    logging.getLogger("rbda.alerts.writer").info(
        "%s: %d packets (%d real, %d bogus) of the %s layout%s written to %s", args.survey, summary["packets"],
        summary["real"], summary["bogus"], summary["layout"],
        f" (schema id {summary['schema_id']})" if summary["schema_id"] is not None else "", args.out)
    return 0
