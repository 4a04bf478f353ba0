"""The lint steps of the test command: ruff on the Python code, snakefmt on the Snakemake files.

The rule set is pyproject.toml's [tool.ruff]; snakefmt's style is its own
(black's), with pyproject.toml's [tool.snakefmt]. Both tools come with the test
extra (and requirements/lock.txt). To fix what these report:
`ruff check --fix .` and `snakefmt Snakefile rules/`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, skip_unless_available


def tool(name: str) -> str:
    """The tool beside this interpreter (the test environment's), else on PATH; skip when absent."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    skip_unless_available(found is not None, f"{name} is not installed (pip install -e '.[test]')")
    return found


def snakemake_files() -> list[str]:
    return ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "rules").glob("*.smk"))]


def test_python_code_passes_ruff():
    result = subprocess.run([tool("ruff"), "check", "--no-cache", "."], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_snakemake_files_are_snakefmt_formatted():
    files = snakemake_files()
    assert "rules/training.smk" in files  # the glob still finds the rule files
    result = subprocess.run([tool("snakefmt"), "--check", *files], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, (
        "not formatted as snakefmt formats them (run `snakefmt Snakefile rules/`):\n"
        + result.stdout[-4000:] + result.stderr[-4000:])
