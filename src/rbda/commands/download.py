"""`rbda download`: fetch a raw survey archive (retries, resume, sha256) and unpack it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "download",
        help="download a raw archive (retries, resume, sha256) and unpack it",
        description=(
            "Download URL to OUTPUT through OUTPUT.part (resumed with an HTTP Range request "
            "after a dropped connection), check its sha256 when given, rename it into place, "
            "then optionally unpack it (tar or zip; any other file is placed as it is)."
        ),
    )
    p.add_argument("--url", required=True, help="http(s):// or ftp:// address of the file")
    p.add_argument("--sha256", help="expected SHA-256 (64 hex digits); a mismatch deletes the file")
    p.add_argument("--output", type=Path, required=True, help="where the downloaded file goes")
    p.add_argument("--unpack-to", type=Path, help="folder to unpack into (must not exist or be empty)")
    p.add_argument("--retries", type=int, default=5, help="attempts after the first (default 5)")
    p.add_argument("--retry-wait", type=float, default=2.0,
                   help="seconds before the first retry, doubling each time (default 2)")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds (default 60)")
    return p


def io_paths(args: argparse.Namespace) -> dict:
    """Outputs for `rbda.atomic.check_outputs` (run before the work by rbda.cli): the file, the unpack folder."""
    return {"outputs": {"--output": args.output}, "inputs": {}, "folders": {"--unpack-to": args.unpack_to}}


def run(args: argparse.Namespace) -> int:
    from rbda.ingest.download import download, unpack, url_file_name

    path = download(args.url, args.output, args.sha256, retries=args.retries,
                    backoff_seconds=args.retry_wait, timeout=args.timeout)
    if args.unpack_to is not None:
        unpack(path, args.unpack_to, file_name=url_file_name(args.url))
    return 0
