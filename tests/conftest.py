"""Shared pytest fixtures, and the demo study run once for the whole session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# beside the checkout; RBDA_REAL_SAMPLES names another place (e.g. from a git worktree)
REAL_SAMPLES = Path(os.environ.get("RBDA_REAL_SAMPLES") or REPO.parent / "shared" / "real-samples")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="module")
def deterministic_single_thread():
    """For a module of training tests that compare numbers (``pytest.mark.usefixtures``): one compute
    thread and torch's deterministic algorithms while it runs."""
    import torch

    from rbda.device import configure_torch

    configure_torch(threads=1, deterministic=True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def surveys():
    """Two small shifted surveys for training tests (DES and HiTS, 800 stamps each; train_helpers);
    a module that needs other sizes defines its own."""
    from train_helpers import survey_data

    return {"des": survey_data("des", 800, 1), "hits": survey_data("hits", 800, 2)}


@pytest.fixture(scope="session")
def real_samples() -> Path:
    """The folder of real survey stamps beside the project; skip when absent."""
    if not REAL_SAMPLES.is_dir():
        pytest.skip(f"real samples not found at {REAL_SAMPLES} (only beside the project checkout)")
    return REAL_SAMPLES


# ---------------------------------------------------------------- order of the modules

def start_rank(item: pytest.Item) -> int:
    """How early a test's module starts: 0 for a test that reads the demo run, 1 for the real-Slurm
    tests, 2 for another end-to-end test, 3 for the rest (the lowest rank of its tests counts)."""
    if "demo_study" in item.fixturenames:
        return 0
    if item.get_closest_marker("slurm"):
        return 1
    return 2 if item.get_closest_marker("slow") else 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules in the order of their start rank, collection order otherwise.

    scripts/test.sh runs the suite in two processes (pytest-xdist ``--dist loadscope
    --no-loadscope-reorder``): each takes the next whole module in this order, so the demo run and
    the Slurm cluster start at once, one per process, instead of whenever their module comes up.
    The demo run is a session fixture, made once per process that runs a test reading it: those
    tests must share one module, which this checks.
    """
    module_of = {item: item.nodeid.split("::", 1)[0] for item in items}
    rank: dict[str, int] = {}
    for item in items:
        rank[module_of[item]] = min(rank.get(module_of[item], 3), start_rank(item))
    demo_modules = sorted({module_of[item] for item in items if start_rank(item) == 0})
    if len(demo_modules) > 1:
        raise pytest.UsageError(f"tests reading the demo run (fixture demo_study) are in {demo_modules}: "
                                "keep them in one module, or each test process would run the demo")
    items.sort(key=lambda item: rank[module_of[item]])


def skip_unless_available(available: bool, reason: str) -> None:
    """Skip a test whose external prerequisite (Slurm, Chromium) is missing.

    Under CI (``CI=true``) a missing prerequisite is a failure, not a skip:
    CI installs them, so their absence there means the set-up broke.
    """
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI but unavailable: {reason}")
    pytest.skip(reason)


# ---------------------------------------------------------------- the workflow

#: What a copy of the workflow needs (tests run Snakemake on copies, never in the checkout).
WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "workflow", "presets", "envs", "profiles/local")
#: The demo's configuration (the README's demo command).
DEMO = ("--configfile", "config.yaml", "presets/demo.yaml")


def copy_workflow(dest: Path) -> Path:
    for name in WORKFLOW_FILES:
        source, target = REPO / name, dest / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def scontrol_that_fails_at_once(folder: Path) -> Path:
    """A folder holding a stand-in ``scontrol`` that fails at once, to put first on PATH.

    The Slurm executor plugin runs ``scontrol show config`` when Snakemake loads
    its plugins (10 s timeout). Where Slurm's client is installed and a
    slurm.conf names a controller that is not running, that stalls every
    Snakemake start by about 9 s; with the stand-in the plugin falls back to its
    defaults at once. For runs that do not use Slurm.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stand_in = folder / "scontrol"
    stand_in.write_text("#!/bin/sh\necho 'scontrol: not available in the workflow tests' >&2\nexit 1\n")
    stand_in.chmod(0o755)
    return folder


def run_snakemake(workdir: Path, *args: str, pythonpath: Path | None = None,
                  path_first: list[Path] = ()) -> subprocess.CompletedProcess:
    """``python -m snakemake ARGS`` in ``workdir`` (this interpreter's), output captured."""
    path = os.pathsep.join([*map(str, path_first), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory) -> dict:
    """The whole demo study, run once per session (the README's demo command, profiles/local).

    Shared by the workflow tests (outputs, incremental re-runs; they only plan
    on it or edit and restore its package copy); the one demo run of the test
    suite (the Slurm test runs a smaller study, tests/slurm/scenario.yaml, with
    its own local reference). It has its own copy of the package
    source on PYTHONPATH, so that a test can edit code without touching the
    checkout. Returns ``{"workdir", "src", "seconds", "no_slurm_bin"}``.
    """
    root = tmp_path_factory.mktemp("demo")
    workdir = copy_workflow(root / "study")
    source = root / "src"
    shutil.copytree(REPO / "src" / "rbda", source / "rbda", ignore=shutil.ignore_patterns("__pycache__"))
    no_slurm = scontrol_that_fails_at_once(root / "no-slurm-bin")
    start = time.monotonic()
    result = run_snakemake(workdir, "--profile", "profiles/local", *DEMO, pythonpath=source,
                           path_first=[no_slurm])
    wall = time.monotonic() - start
    print(f"\ndemo study: {wall:.0f} s wall time")
    logs = "\n".join(p.read_text()[-2000:] for p in (workdir / "logs").rglob("*.log")
                     if "error" in p.read_text().lower()) if (workdir / "logs").exists() else ""
    assert result.returncode == 0, result.stderr[-6000:] + logs[-6000:]
    return {"workdir": workdir, "src": source, "seconds": wall, "no_slurm_bin": no_slurm}
