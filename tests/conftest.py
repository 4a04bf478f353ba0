"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# beside the checkout; RBDA_REAL_SAMPLES names another place (e.g. from a git worktree)
REAL_SAMPLES = Path(os.environ.get("RBDA_REAL_SAMPLES") or REPO.parent / "shared" / "real-samples")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_samples() -> Path:
    """The folder of real survey stamps beside the project; skip when absent."""
    if not REAL_SAMPLES.is_dir():
        pytest.skip(f"real samples not found at {REAL_SAMPLES} (only beside the project checkout)")
    return REAL_SAMPLES


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
