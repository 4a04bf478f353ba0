"""Which locked environment a result came from (standard library only).

The checkout holds ``requirements/lock.txt`` (exact versions and hashes of every
Python dependency except torch, written by ``scripts/lock.sh``) and
``requirements/torch.txt`` (the torch pin ``scripts/setup.sh`` installs first).
The lock's first line records :func:`lock_input_sha256`, a hash of what the lock
was generated from (pyproject.toml's dependency lists and the torch pin), so a
lock that was not regenerated after a dependency change is detectable
(tests/test_lock.py).

    python -m rbda.provenance                     # {"lock_sha256": ..., "lock_matches_installed": ...}
    python -m rbda.provenance --lock-input-sha256  # what scripts/lock.sh writes into the header
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import sys
import tomllib
from pathlib import Path

LOCK_FILE = Path("requirements") / "lock.txt"
TORCH_PIN_FILE = Path("requirements") / "torch.txt"
LOCK_INPUT_HEADER = "# rbda-lock-input-sha256: "

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name (``Jinja2`` -> ``jinja2``, ``typing_extensions`` -> ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def checkout_root() -> Path | None:
    """The source checkout this module was imported from, or None (an installed, non-editable copy)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / LOCK_FILE).is_file() else None


def torch_pin(root: Path) -> str:
    """The requirement line of ``requirements/torch.txt`` (``torch==X.Y.Z``)."""
    lines = [line.strip() for line in (root / TORCH_PIN_FILE).read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1 or not _PIN.match(lines[0]) or canonical_name(_PIN.match(lines[0])[1]) != "torch":
        raise ValueError(f"{root / TORCH_PIN_FILE}: expected exactly one line 'torch==VERSION', got {lines}")
    return lines[0]


def lock_input_sha256(root: Path) -> str:
    """Hash of the lock's inputs: pyproject.toml's dependency lists (parsed, so comments and
    layout do not count) and the torch pin. Changes whenever the lock must be regenerated."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    inputs = {
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "torch": torch_pin(root),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded_lock_input_sha256(lock_text: str) -> str | None:
    """The input hash in the lock's header line, or None when the header is missing."""
    for line in lock_text.splitlines():
        if line.startswith(LOCK_INPUT_HEADER):
            return line[len(LOCK_INPUT_HEADER):].strip()
    return None


def locked_versions(lock_text: str) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of a lock file."""
    pins: dict[str, str] = {}
    for line in lock_text.splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonical_name(match[1])] = match[2]
    return pins


#: A wheel-installed distribution's metadata folder, ``{name}-{version}.dist-info``: its name and
#: version without reading its METADATA (about half a second per process for all of them here).
_DIST_INFO = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$")


def installed_versions() -> dict[str, str]:
    """``{canonical name: version}`` of the distributions importable here (the first on sys.path wins,
    as :func:`importlib.metadata.distributions` orders them). Names and versions come from the
    ``.dist-info`` folder names; any other metadata folder (``.egg-info``, an unusual name) is read."""
    found: dict[str, str] = {}
    for entry in sys.path:
        folder = Path(entry or ".")
        try:
            names = os.listdir(folder)
        except OSError:  # a zip, a missing folder: nothing installed there the lock could name
            continue
        for name in names:
            match = _DIST_INFO.match(name)
            if match:
                found.setdefault(canonical_name(match["name"]), match["version"])
            elif name.endswith((".dist-info", ".egg-info")):
                dist = importlib.metadata.PathDistribution(folder / name)
                dist_name = dist.metadata["Name"]  # each .metadata access parses the file again
                if dist_name:
                    found.setdefault(canonical_name(dist_name), dist.version)
    return found


def lock_differences(lock_text: str, installed: dict[str, str]) -> list[str]:
    """One line per locked package whose installed version (``installed``: canonical name ->
    version) is not the locked one, missing packages included; empty when everything matches."""
    return [f"{name}: locked {version}, installed {installed.get(name, 'nothing')}"
            for name, version in sorted(locked_versions(lock_text).items()) if installed.get(name) != version]


def lock_provenance() -> dict:
    """``{"lock_sha256": hex or None, "lock_matches_installed": bool or None}``.

    ``lock_sha256`` is the hash of ``requirements/lock.txt`` of the checkout rbda runs from
    (None when rbda is not run from a checkout); ``lock_matches_installed`` is True when every
    locked package is installed in exactly the locked version (None without a lock).
    """
    root = checkout_root()
    if root is None:
        return {"lock_sha256": None, "lock_matches_installed": None}
    data = (root / LOCK_FILE).read_bytes()
    return {"lock_sha256": hashlib.sha256(data).hexdigest(),
            "lock_matches_installed": not lock_differences(data.decode(), installed_versions())}


#: The learning core shared by every run: modules whose code changes the numbers any training run
#: produces (relative to the ``rbda`` package). In the method and backbone packages, the modules
#: that declare nothing (base classes, shared helpers) are shared too; a module that declares a
#: method or backbone counts only for the runs that execute it (:func:`run_code_sha256`).
LEARNING_CORE = ("learn/train.py", "learn/checkpoint.py", "device.py", "learn/optim.py", "learn/data.py",
                 "learn/evaluate.py", "learn/models.py", "learn/reversal.py", "learn/entropy.py", "learn/losses.py",
                 "learn/metrics.py", "ingest/multiclass.py", "learn/augment.py", "seeding.py", "ingest/splits.py",
                 "ingest/store.py", "study.py", "registry.py", "learn/methods", "learn/backbones", "commands/train.py")


def _declaring_files() -> set[Path]:
    from rbda.registry import REGISTRY, module_source

    return {module_source(d.module).resolve() for d in (*REGISTRY.methods.values(), *REGISTRY.backbones.values())}


def learning_core_files() -> list[Path]:
    """The shared learning core's source files, sorted: :data:`LEARNING_CORE`, less the modules
    that declare a method or a backbone (the package as installed or checked out)."""
    package = Path(__file__).resolve().parent
    declaring = _declaring_files()
    files: list[Path] = []
    for name in LEARNING_CORE:
        path = package / name
        files += [f for f in sorted(path.rglob("*.py")) if f.resolve() not in declaring] if path.is_dir() else [path]
    return files


def _digest(labelled: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for label, path in labelled:
        digest.update(label.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def learning_core_sha256() -> str:
    """A hash of the shared learning core's code (file names and contents): what every run executes."""
    package = Path(__file__).resolve().parent
    return _digest([(str(path.relative_to(package)), path) for path in learning_core_files()])


def run_code_files(method: str, backbone: str) -> list[tuple[str, Path]]:
    """``(module name, file)`` of the declaring modules a run of ``method`` with ``backbone`` executes:
    the method's module, the method and backbone modules it imports, the backbone's module."""
    from rbda import registry

    if backbone not in registry.REGISTRY.backbones:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {registry.BACKBONES}")
    modules = set(registry.scoped_modules(registry.method(method).module)) | set(registry.scoped_modules(registry.REGISTRY.backbones[backbone].module))
    return [(m, registry.module_source(m)) for m in sorted(modules)]


def run_code_sha256(method: str, backbone: str) -> str:
    """The code hash of a run of ``method`` with ``backbone``: the shared learning core
    (:func:`learning_core_sha256`) and the run's own method and backbone modules
    (:func:`run_code_files`), not their siblings'. Recorded in every run JSON, part of every
    checkpoint's fingerprint and a workflow parameter of every training job, so that editing
    a method reruns that method's runs, and editing shared code reruns every run."""
    package = Path(__file__).resolve().parent
    shared = [(str(path.relative_to(package)), path) for path in learning_core_files()]
    return _digest(shared + run_code_files(method, backbone))


#: The data-preparation code: modules whose code changes the preprocessed Parquet files (raw readers,
#: FITS decoding, the restricted unpickler they use, preprocessing, the Parquet writer), relative to
#: the ``rbda`` package; ``ingest/readers`` counts whole. Kept apart from :data:`LEARNING_CORE`.
DATA_PREPARATION = ("ingest/preprocess.py", "ingest/fits.py", "ingest/readers", "ingest/safe_pickle.py",
                    "ingest/safe_pickle_worker.py", "ingest/pickle_rebuild.py", "ingest/store.py",
                    "surveys.py", "data/surveys.json")  # the survey declarations: class maps, layouts, size rules


def data_preparation_files() -> list[Path]:
    """The data-preparation code's source files, sorted (the package as installed or checked out)."""
    package = Path(__file__).resolve().parent
    files: list[Path] = []
    for name in DATA_PREPARATION:
        path = package / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def data_preparation_sha256() -> str:
    """A hash of the data-preparation code (file names and contents): a workflow parameter of every
    preprocessing job, so that editing a reader, the FITS decoder or the preprocessing reruns
    preprocessing and what depends on it (splits, training, ...), as :func:`learning_core_sha256` does
    for training; the same opt-out (config ``rerun_on_code_change: false``)."""
    package = Path(__file__).resolve().parent
    return _digest([(str(path.relative_to(package)), path) for path in data_preparation_files()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rbda.provenance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock-input-sha256", action="store_true",
                        help="print the hash of the lock's inputs (pyproject.toml dependencies, torch pin)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1, naming each difference, unless the installed packages equal the lock")
    args = parser.parse_args(argv)
    if args.lock_input_sha256:
        print(lock_input_sha256(Path(__file__).resolve().parents[2]))
        return 0
    print(json.dumps(lock_provenance()), flush=True)
    if args.check:
        root = checkout_root()
        if root is None:
            print("provenance: rbda is not run from a checkout with requirements/lock.txt", file=sys.stderr)
            return 1
        differences = lock_differences((root / LOCK_FILE).read_text(), installed_versions())
        for line in differences:
            print(f"provenance: {line}", file=sys.stderr)
        return 1 if differences else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
