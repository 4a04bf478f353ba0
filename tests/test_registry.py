"""The method and backbone registry (rbda.registry): declarations read without torch, a method
added from a module outside the package, and code hashes scoped to what a run executes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import DEMO, REPO, copy_workflow, run_snakemake, scontrol_that_fails_at_once
from rbda import registry
from rbda.errors import RbdaError

#: A throwaway method: fine-tuning with its loss scaled by its own setting ``scale``.
THROWAWAY = '''
"""A throwaway method of the registry test: fine-tuning, its loss times ``scale``."""

from rbda.learn.methods.finetune import FineTune
from rbda.registry import MethodDeclaration, Setting

METHOD = MethodDeclaration(
    name="throwaway", label="TA", cls="Throwaway", order=1000,
    settings=(Setting("scale", 1.0, "multiplier of the fine-tuning loss", gt=0),),
    mem_mb=1000, runtime=5, colour="#000000", line_style="-.",
)


class Throwaway(FineTune):
    name = METHOD.name

    def losses(self, model, plan, i):
        for loss in super().losses(model, plan, i):
            yield self.spec.settings["scale"] * loss
'''


def write_module(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def python(code: str, pythonpath: list[Path], extra_modules: str = "") -> str:
    """Run ``code`` in a fresh interpreter (the registry is read at import) and return its stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, pythonpath)), RBDA_EXTRA_MODULES=extra_modules,
               OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_declarations_are_read_without_importing_torch():
    out = python("import sys, rbda.study, rbda.registry as r; "
                 "print(r.METHODS[0], len(r.BACKBONES), 'torch' in sys.modules)", [REPO / "src"])
    assert out == f"baseline {len(registry.BACKBONES)} False"


def test_every_declaration_executes_as_read():
    for name in registry.METHODS:
        assert registry.method_class(name).name == name
    for name in registry.BACKBONES:
        assert registry.backbone_class(name).__name__ == registry.REGISTRY.backbones[name].cls


def test_a_declaration_that_is_not_literal_is_refused(tmp_path):
    path = write_module(tmp_path, "bad", 'X = 1\nMETHOD = MethodDeclaration(name="bad", label="B", cls="B", order=X)\n')
    with pytest.raises(RbdaError, match=r"bad.py: METHOD: a declaration's arguments must be literals.*'X'"):
        registry.read_declarations("bad", path)


def test_a_name_declared_twice_is_refused(tmp_path, monkeypatch):
    write_module(tmp_path, "twice", THROWAWAY.replace('name="throwaway"', 'name="mme"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RbdaError, match="method 'mme' is declared twice: in rbda.learn.methods.mme and twice"):
        registry.discover(["twice"])


def test_an_extra_module_that_cannot_be_found_is_named():
    with pytest.raises(RbdaError, match="RBDA_EXTRA_MODULES / registry: cannot find the source of module 'no_such_mod'"):
        registry.discover(["no_such_mod"])


def test_a_throwaway_method_from_a_temporary_module_plans_and_trains(tmp_path, monkeypatch):
    """The recipe of docs/architecture.md: one module makes a method. Registered from tmp_path
    (RBDA_EXTRA_MODULES), it is planned by the workflow with its setting from the config and
    trained by `rbda train` with its own option, touching no file of the checkout."""
    from rbda.learn.models import StampClassifier, save_model_file
    from train_helpers import surveys_with_splits

    def checkout_status() -> str:
        return subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "src", "rules",
                               "workflow", "tests", "config.yaml"], cwd=REPO, capture_output=True, text=True).stdout

    status = checkout_status()
    plugins = tmp_path / "plugins"
    write_module(plugins, "throwaway_method", THROWAWAY)
    monkeypatch.setenv("RBDA_EXTRA_MODULES", "throwaway_method")
    pythonpath = os.pathsep.join([str(plugins), str(REPO / "src")])

    # the workflow plans its runs like fine-tuning's, with its setting from method_settings
    workflow = copy_workflow(tmp_path / "study")
    overlay = workflow / "presets" / "throwaway.yaml"
    overlay.write_text(json.dumps({"methods": ["finetune", "throwaway"], "method_settings": {"throwaway": {"scale": 0.5}},
                                   "save_models": []}))
    no_slurm = [scontrol_that_fails_at_once(tmp_path / "no-slurm-bin")]
    result = run_snakemake(workflow, "--dry-run", "--printshellcmds", *DEMO, "presets/throwaway.yaml",
                           pythonpath=pythonpath, path_first=no_slurm)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    stats = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    jobs = {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()[3:]}
    assert jobs["train_throwaway"] == jobs["train_finetune"] == 12 * 3 * 2  # demo: pairs x shots x splits
    commands = [line.removeprefix("Shell command: ") for line in output.splitlines()
                if line.startswith("Shell command: rbda train --method throwaway")]
    assert len(commands) == jobs["train_throwaway"] and all("--scale 0.5" in c for c in commands)

    # a tiny training run with its own option, recorded in the run JSON and its code hash
    data = {name: arg for name, (_, arg) in surveys_with_splits(tmp_path / "data", ("des", "hits"), 600).items()}
    init = tmp_path / "baseline.pt"
    save_model_file(init, StampClassifier("linear"), {"method": "baseline", "source": "des"})
    metrics = tmp_path / "throwaway.json"
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1")
    train = subprocess.run(
        [sys.executable, "-m", "rbda.cli", "train", "--method", "throwaway", "--source", "des", "--target", "hits",
         "--data", data["des"], "--data", data["hits"], "--init-model", str(init), "--shots", "5", "--split", "0",
         "--seed", "7", "--scale", "0.5", "--metrics", str(metrics), "--epoch-size", "200", "--max-epochs", "2",
         "--threads", "1", "--device", "cpu"], env=env, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    record = json.loads(metrics.read_text())
    assert (record["method"], record["hyperparameters"]["scale"], record["training"]["epochs_run"]) == ("throwaway", 0.5, 2)
    expected = python("from rbda.provenance import run_code_sha256; print(run_code_sha256('throwaway', 'study_cnn'))",
                      [plugins, REPO / "src"], "throwaway_method")
    assert record["versions"]["code_sha256"] == expected
    # its option is refused with another method
    refused = subprocess.run([sys.executable, "-m", "rbda.cli", "train", "--method", "finetune", "--source", "des",
                              "--target", "hits", "--data", data["des"], "--data", data["hits"], "--init-model", str(init),
                              "--shots", "5", "--split", "0", "--seed", "7", "--scale", "0.5", "--metrics",
                              str(tmp_path / "refused.json")], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "'--scale': expected only with --method throwaway" in refused.stderr
    assert checkout_status() == status  # nothing in the checkout was added or changed


# -- code hashes scoped to what a run executes (rbda.provenance.run_code_sha256) ---------------------


@pytest.fixture()
def package(tmp_path) -> Path:
    """A copy of the package to edit."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "rbda", src / "rbda", ignore=shutil.ignore_patterns("__pycache__"))
    return src


HASHES = ("from rbda.provenance import run_code_sha256 as h; "
          "print(' '.join(h(m, b) for m, b in (('mme', 'study_cnn'), ('mmefm', 'study_cnn'), ('dann', 'study_cnn'), "
          "('mme', 'deephits'))))")


def hashes(src: Path) -> dict[str, str]:
    values = python(HASHES, [src]).split()
    return dict(zip(("mme", "mmefm", "dann", "mme/deephits"), values, strict=True))


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def test_a_runs_code_hash_covers_its_own_method_and_backbone_not_their_siblings(package):
    methods, backbones = package / "rbda" / "learn" / "methods", package / "rbda" / "learn" / "backbones"
    before = hashes(package)
    assert len(set(before.values())) == 4  # each method and backbone its own hash

    # a new method module, and an edit to a sibling method and backbone: mme's runs keep their hash
    write_module(methods, "mmels", THROWAWAY.replace('name="throwaway"', 'name="mmels"'))
    edit(methods / "dann.py")
    edit(backbones / "earlysn.py")
    after = hashes(package)
    assert after["mme"] == before["mme"] and after["mmefm"] == before["mmefm"]
    assert after["mme/deephits"] == before["mme/deephits"] and after["dann"] != before["dann"]

    # editing mme.py changes mme's hash and that of the methods that import it (mmefm), not dann's
    edit(methods / "mme.py")
    mme_edited = hashes(package)
    assert mme_edited["mme"] != after["mme"] and mme_edited["mmefm"] != after["mmefm"]
    assert mme_edited["dann"] == after["dann"]

    # a backbone's edit changes the hash of its runs only
    edit(backbones / "deephits.py")
    deephits_edited = hashes(package)
    assert deephits_edited["mme/deephits"] != mme_edited["mme/deephits"] and deephits_edited["mme"] == mme_edited["mme"]

    # shared code (the loop, the losses, the methods' base classes, shared backbone helpers) changes every hash
    for shared in ("learn/losses.py", "learn/methods/base.py", "learn/backbones/rotation.py", "learn/train.py"):
        previous = hashes(package)
        edit(package / "rbda" / shared)
        changed = hashes(package)
        assert all(changed[k] != previous[k] for k in previous), shared
