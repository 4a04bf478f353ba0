"""requirements/lock.txt against pyproject.toml, and rbda.provenance (no network).

The lock (scripts/lock.sh) pins every dependency except torch, which
requirements/torch.txt pins; these tests fail when a locked version left the
ranges of pyproject.toml, when a direct dependency is missing from the lock,
or when pyproject.toml's dependency lists or the torch pin changed without
regenerating the lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from rbda import provenance


def direct_requirements(pyproject_text: str) -> list[Requirement]:
    """The base dependencies and every extra (the lock covers them all)."""
    project = tomllib.loads(pyproject_text)["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(line) for line in [*project["dependencies"], *(r for group in extras.values() for r in group)]]


def lock_violations(requirements: list[Requirement], pins: dict[str, str], torch_pin: str) -> list[str]:
    """Why the pins do not satisfy the requirements (empty when they do); torch is checked against its own pin."""
    pins = {**pins, "torch": str(Requirement(torch_pin).specifier).removeprefix("==")}
    problems = []
    for req in requirements:
        name = provenance.canonical_name(req.name)
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11", "sys_platform": "linux"}):
            continue
        if name not in pins:
            problems.append(f"{req}: not in the lock")
        elif not req.specifier.contains(Version(pins[name]), prereleases=True):
            problems.append(f"{req}: locked {pins[name]}")
    return problems


def test_locked_versions_are_inside_the_pyproject_ranges(repo_root):
    lock = (repo_root / provenance.LOCK_FILE).read_text()
    violations = lock_violations(direct_requirements((repo_root / "pyproject.toml").read_text()),
                                 provenance.locked_versions(lock), provenance.torch_pin(repo_root))
    assert not violations, f"requirements/lock.txt disagrees with pyproject.toml (run bash scripts/lock.sh): {violations}"


def test_the_lock_is_generated_from_the_current_pyproject(repo_root):
    lock = (repo_root / provenance.LOCK_FILE).read_text()
    recorded = provenance.recorded_lock_input_sha256(lock)
    assert recorded is not None, "requirements/lock.txt has no rbda-lock-input-sha256 header (bash scripts/lock.sh)"
    assert recorded == provenance.lock_input_sha256(repo_root), (
        "pyproject.toml's dependencies or requirements/torch.txt changed since requirements/lock.txt "
        "was generated: run bash scripts/lock.sh")


def test_every_locked_package_is_hashed_and_torch_is_left_out(repo_root):
    lock = (repo_root / provenance.LOCK_FILE).read_text()
    pins = provenance.locked_versions(lock)
    entries = [block for block in lock.split("\n") if "==" in block and not block.startswith(("#", " "))]
    assert len(entries) == len(pins) > 50
    blocks = lock.split("==")[1:]
    assert all("--hash=sha256:" in block for block in blocks), "a locked package without a hash"
    assert not {"torch", "triton"} & set(pins) and not any(n.startswith("nvidia-") for n in pins)


def test_the_lock_has_the_slurm_plugin_version_the_docs_say_is_tested(repo_root):
    page = " ".join((repo_root / "docs" / "slurm.md").read_text().split())
    tested = re.search(r"Tested with snakemake-executor-plugin-slurm (\S+)", page)
    assert tested, "docs/slurm.md: no 'Tested with snakemake-executor-plugin-slurm VERSION'"
    pins = provenance.locked_versions((repo_root / provenance.LOCK_FILE).read_text())
    assert pins["snakemake-executor-plugin-slurm"] == tested[1]


def fake_checkout(tmp_path: Path, repo_root: Path) -> Path:
    for name in ["pyproject.toml", str(provenance.TORCH_PIN_FILE)]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((repo_root / name).read_text())
    return tmp_path


def test_the_staleness_hash_follows_dependency_changes_only(tmp_path, repo_root):
    root = fake_checkout(tmp_path, repo_root)
    original = provenance.lock_input_sha256(root)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()

    pyproject.write_text(text.replace('description = "', 'description = "Edited: ') + "\n# a comment\n")
    assert provenance.lock_input_sha256(root) == original, "layout and non-dependency fields do not count"

    pyproject.write_text(text.replace('"pytest>=8.0"', '"pytest>=8.1"'))
    assert provenance.lock_input_sha256(root) != original, "a changed range makes the lock stale"

    pyproject.write_text(text)
    (root / provenance.TORCH_PIN_FILE).write_text("torch==2.12.0\n")
    assert provenance.lock_input_sha256(root) != original, "a changed torch pin makes the lock stale"


def test_range_check_names_what_is_out_of_range_or_missing():
    reqs = [Requirement("numpy>=1.26"), Requirement("snakemake>=9.0,<10"), Requirement("torch>=2.1"),
            Requirement("pywin32>=300; sys_platform == 'win32'")]
    assert lock_violations(reqs, {"numpy": "2.4.6", "snakemake": "9.27.1"}, "torch==2.13.0") == []
    assert lock_violations(reqs, {"numpy": "1.25.0", "snakemake": "10.0.0"}, "torch==2.0.1") == [
        "numpy>=1.26: locked 1.25.0", "snakemake<10,>=9.0: locked 10.0.0", "torch>=2.1: locked 2.0.1"]
    assert lock_violations(reqs, {"snakemake": "9.1"}, "torch==2.13.0") == ["numpy>=1.26: not in the lock"]


def test_torch_pin_file_must_hold_one_torch_pin(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / provenance.TORCH_PIN_FILE).write_text("# comment\ntorch>=2.1\n")
    with pytest.raises(ValueError, match=r"torch\.txt: expected exactly one line 'torch==VERSION'"):
        provenance.torch_pin(tmp_path)


LOCK_TEXT = """# rbda-lock-input-sha256: abc
# header
Jinja2==3.1.6 \\
    --hash=sha256:00
    # via torch
typing_extensions==4.16.0 \\
    --hash=sha256:11
pyyaml==6.0.4 ; sys_platform == 'linux' \\
    --hash=sha256:22
"""


def test_locked_versions_parse_and_normalise_names():
    assert provenance.locked_versions(LOCK_TEXT) == {
        "jinja2": "3.1.6", "typing-extensions": "4.16.0", "pyyaml": "6.0.4"}
    assert provenance.recorded_lock_input_sha256(LOCK_TEXT) == "abc"
    assert provenance.recorded_lock_input_sha256("numpy==1.0\n") is None


def test_lock_differences_name_each_mismatch():
    installed = {"jinja2": "3.1.6", "typing-extensions": "4.15.0"}
    assert provenance.lock_differences(LOCK_TEXT, installed) == [
        "pyyaml: locked 6.0.4, installed nothing", "typing-extensions: locked 4.16.0, installed 4.15.0"]
    assert provenance.lock_differences(LOCK_TEXT, {**installed, "typing-extensions": "4.16.0",
                                                   "pyyaml": "6.0.4", "extra": "1"}) == []


def test_provenance_of_this_checkout(repo_root):
    result = provenance.lock_provenance()
    expected_root = Path(provenance.__file__).resolve().parents[2]
    assert expected_root == repo_root.resolve()
    assert result["lock_sha256"] == hashlib.sha256((repo_root / provenance.LOCK_FILE).read_bytes()).hexdigest()
    assert isinstance(result["lock_matches_installed"], bool)
    installed = provenance.installed_versions()
    assert installed["pytest"] == pytest.__version__  # canonical names, versions of this interpreter
    assert result["lock_matches_installed"] == (
        provenance.lock_differences((repo_root / provenance.LOCK_FILE).read_text(), installed) == [])


def test_installed_versions_from_folder_names_equal_importlib_metadata(tmp_path, monkeypatch):
    """The fast listing (dist-info folder names) gives what reading every METADATA gives, here and
    for an egg-info, a shadowed copy later on sys.path and an unreadable path entry."""
    import importlib.metadata

    def by_metadata():
        found = {}
        for dist in importlib.metadata.distributions():
            if dist.metadata["Name"]:
                found.setdefault(provenance.canonical_name(dist.metadata["Name"]), dist.version)
        return found

    assert provenance.installed_versions() == by_metadata()
    first, later = tmp_path / "first", tmp_path / "later"
    for folder, name, version in [(first, "Shadowed_Pkg", "2.0"), (later, "Shadowed_Pkg", "1.0"),
                                  (later, "old.egg", "0.3")]:
        meta = folder / (f"{name}-{version}.dist-info" if name != "old.egg" else "old.egg.egg-info")
        meta.mkdir(parents=True)
        (meta / ("METADATA" if meta.suffix == ".dist-info" else "PKG-INFO")).write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    monkeypatch.setattr(sys, "path", [str(first), str(tmp_path / "missing"), str(later), *sys.path])
    fast = provenance.installed_versions()
    assert fast == by_metadata()
    assert fast["shadowed-pkg"] == "2.0" and fast["old-egg"] == "0.3"


def test_provenance_outside_a_checkout_is_none(monkeypatch, tmp_path):
    monkeypatch.setattr(provenance, "__file__", str(tmp_path / "site-packages" / "rbda" / "provenance.py"))
    assert provenance.lock_provenance() == {"lock_sha256": None, "lock_matches_installed": None}


def test_command_line_prints_the_provenance_and_the_input_hash(repo_root):
    run = subprocess.run([sys.executable, "-m", "rbda.provenance"], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout) == provenance.lock_provenance()
    run = subprocess.run([sys.executable, "-m", "rbda.provenance", "--lock-input-sha256"],
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == provenance.lock_input_sha256(repo_root)
