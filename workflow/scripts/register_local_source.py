"""Check a local data source (`source: path`) and record what it holds.

Run by the `register_local_survey` rule. The manifest lists every file under
the configured path(s) with its size and modification time, so that
`rbda preprocess` runs again when the manifest changes. Planning needs no
data; a missing or empty path fails here with a message naming the config key.
"""

import sys
from pathlib import Path

from rbda.atomic import write_json
from rbda.errors import RbdaError


def describe(path: Path) -> list[dict]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [{"path": str(f), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files]


def manifest(survey: str, paths: list[str]) -> dict:
    entries = []
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise RbdaError(
                f"config key 'surveys.{survey}.path': {text} does not exist; expected the "
                f"survey's raw file or folder (see docs/data.md)"
            )
        files = describe(path)
        if not files:
            raise RbdaError(f"config key 'surveys.{survey}.path': {text} holds no files")
        entries.append({"path": str(path.resolve()), "files": files})
    return {"survey": survey, "sources": entries}


def main(smk) -> int:
    survey = smk.wildcards.survey
    with open(smk.log[0], "w") as log:
        try:
            result = manifest(survey, list(smk.params.paths))
        except RbdaError as exc:
            print(f"error: {exc}", file=log)
            print(f"error: {exc}", file=sys.stderr)
            return 1
        write_json(smk.output[0], result)
        n_files = sum(len(e["files"]) for e in result["sources"])
        print(f"{survey}: {n_files} files under {', '.join(map(str, smk.params.paths))}", file=log)
    return 0


sys.exit(main(snakemake))  # noqa: F821 (injected by Snakemake)
