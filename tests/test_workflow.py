"""The Snakemake workflow: planning (dry runs), lint, the demo study, incremental re-runs.

Every test runs Snakemake on a copy of the workflow in a temporary folder, so
no test reads or writes the checkout's results/. The dry runs need neither
data nor network. The demo tests (marked slow) run the whole demo study once
(``presets/demo.yaml``, a few minutes on 2 cores), with its own copy of the
package source on PYTHONPATH so that a test can edit the report code.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import math
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

from rbda.results.outputs import expected_outputs

from conftest import DEMO, REPO, copy_workflow, run_snakemake, scontrol_that_fails_at_once

SURVEYS = ["hits", "des", "ztf", "atlas"]

# These tests do not use Slurm: a stand-in `scontrol` that fails at once goes first on
# PATH (conftest.scontrol_that_fails_at_once says why).
NO_SLURM_BIN: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def no_slurm_client(tmp_path_factory):
    NO_SLURM_BIN[:] = [scontrol_that_fails_at_once(tmp_path_factory.mktemp("no-slurm-bin"))]
    yield
    NO_SLURM_BIN.clear()


def snakemake(workdir: Path, *args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, pythonpath=pythonpath, path_first=NO_SLURM_BIN)


def planned_jobs(workdir: Path, *args: str, pythonpath: Path | None = None) -> dict[str, int]:
    """Jobs per rule of a dry run (the "Job stats" table); {} when there is nothing to do."""
    result = snakemake(workdir, "--dry-run", *args, pythonpath=pythonpath)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.splitlines()[3:]:
        rule, count = line.split()
        counts[rule] = int(count)
    assert counts.pop("total") == sum(counts.values())
    return counts


def write_overlay(workdir: Path, name: str, overlay: dict) -> str:
    path = workdir / "presets" / name
    path.write_text(yaml.safe_dump(overlay))
    return str(path.relative_to(workdir))


@pytest.fixture()
def workflow(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path / "study")


# ---------------------------------------------------------------- planning


def test_published_study_plans_the_papers_jobs(workflow):
    config = yaml.safe_load((workflow / "config.yaml").read_text())
    n_lambdas = len(config["lambdas"])
    assert planned_jobs(workflow) == {
        # HiTS is downloaded; DES, ZTF, ATLAS are local paths (checked at run time, not planning)
        "download_survey": 1,
        "register_local_survey": 3,
        "preprocess_survey": 4,
        "split_survey": 4 * 10,
        "train_baseline": 4 * 10,
        "train_finetune": 12 * 5 * 10,
        "train_mme": 12 * 5 * 10,  # lambda_jobs: grid, one job trains every lambda of a group
        "choose_lambda": 12,  # per_pair: one lambda per pair, chosen once
        "select_lambda": 12 * 5 * 10,
        "select_model": 12 * 5 * 10,  # save_models: [mme-selected]
        "aggregation_inputs": 1,
        "aggregate": 1,
        "all": 1,
    }
    assert 12 * 5 * 10 * n_lambdas == 4200  # MME runs, in 600 jobs


def test_demo_preset_plans_the_same_rules_smaller(workflow):
    assert planned_jobs(workflow, *DEMO) == {
        "synthesize_survey": 4,
        "preprocess_survey": 4,
        "split_survey": 4 * 2,
        "train_baseline": 4 * 2,
        "train_finetune": 12 * 3 * 2,
        "train_mme": 12 * 3 * 2,  # one job per group trains both lambdas
        "choose_lambda": 12,
        "select_lambda": 12 * 3 * 2,
        "select_model": 12 * 3 * 2,
        "aggregation_inputs": 1,
        "aggregate": 1,
        "all": 1,
    }


def test_rubin_preset_plans_a_declared_fifth_survey_as_the_four_surveys_target(workflow):
    """presets/rubin.yaml declares a Rubin-like survey the code has never seen; it is synthesised (generic
    layout), preprocessed, split and trained on like the study's four, as the target of four pairs; its stamps
    are written as Rubin packets and scored with the real Rubin and DECam packets."""
    pairs = 4 * 3 * 2  # pairs x shots x splits
    for name in ("lsst_avro", "decam_avro"):  # the real packets it scores, beside the clone (only planned here)
        (workflow.parent / "shared" / "real-samples" / name).mkdir(parents=True)
    assert planned_jobs(workflow, *DEMO, "presets/rubin.yaml") == {
        "synthesize_survey": 5, "preprocess_survey": 5, "split_survey": 5 * 2, "train_baseline": 5 * 2,
        "train_finetune": pairs, "train_mme": pairs, "choose_lambda": 4, "select_lambda": pairs,
        "select_model": pairs, "aggregation_inputs": 1, "aggregate": 1, "all": 1,
        # its stamps as Rubin packets, scored with those of shared/ by two models
        "write_survey_packets": 1, "predict_alerts": 2 * 3, "prediction_gallery": 2 * 3,
    }
    declared = json.loads((workflow / "resources" / "survey_declarations.json").read_text())
    assert list(declared["surveys"]) == ["rubin"] and declared["surveys"]["rubin"]["stamp_size"] == 30


EXTENDED = (*DEMO, "presets/extended.yaml")


def test_extended_preset_fans_out_every_method(workflow):
    """S+T and DANN per (split, pair, shots); ENT's lambdas as one job too, then selected like MME."""
    per_pair = 12 * 3 * 2
    assert planned_jobs(workflow, *EXTENDED) == {
        "synthesize_survey": 4,
        "preprocess_survey": 4,
        "split_survey": 4 * 2,
        "train_baseline": 4 * 2,
        "train_finetune": per_pair,
        "train_mme": per_pair,
        "train_st": per_pair,
        "train_ent": per_pair,
        "train_dann": per_pair,
        "choose_lambda": 12 * 2,  # mme and ent
        "select_lambda": per_pair * 2,  # mme-selected and ent-selected
        "select_model": per_pair,  # save_models: [mme-selected]
        "aggregation_inputs": 1,
        "aggregate": 1,
        "all": 1,
    }


ALL_METHODS = (*DEMO, "presets/all_methods.yaml")


def test_all_methods_preset_plans_every_registered_method_on_the_demo(workflow):
    """Every registered adaptation method per (split, pair, shots) (a lambda method's job trains its lambdas),
    then selected. A method module added to the package fails here until the preset lists it."""
    from rbda.registry import ADAPTATION_METHODS, LAMBDA_METHODS

    preset = yaml.safe_load((REPO / "presets" / "all_methods.yaml").read_text())
    assert preset["methods"] == list(ADAPTATION_METHODS), "presets/all_methods.yaml: list every registered method"
    per_pair = 12 * 3 * 2
    expected = {
        "synthesize_survey": 4,
        "preprocess_survey": 4,
        "split_survey": 4 * 2,
        "train_baseline": 4 * 2,
        # one job per (split, pair, shots): a lambda method's job trains its lambdas as members
        **{f"train_{m}": per_pair for m in ADAPTATION_METHODS},
        "choose_lambda": 12 * len(LAMBDA_METHODS),
        "select_lambda": per_pair * len(LAMBDA_METHODS),
        "select_model": per_pair,  # save_models: [mme-selected]
        "aggregation_inputs": 1,
        "aggregate": 1,
        "all": 1,
    }
    assert planned_jobs(workflow, *ALL_METHODS) == expected
    commands = dry_run_commands(workflow, *ALL_METHODS, "--",
                                "results/runs/cdac-selected/des-to-hits/shots-5/split-1.json")
    train = [c for c in commands if c.startswith("rbda train --method cdac")]
    # the pair's choice reads every shot count and split: one grid job (both lambdas) each
    assert len(train) == 3 * 2 and all("--lambda 0.05 0.5" in c and "--strong-view-shift integer" in c
                                       and "--topk 5" in c for c in train)


def test_the_schema_names_no_method_the_registry_checks_them():
    """Method names come from the method modules (rbda.registry), not from the schema: it has no
    enum of them and no per-method keys; the workflow checks the names (test below)."""
    from rbda.registry import METHODS
    from rbda.study import STUDY_METHODS

    text = (REPO / "workflow" / "schemas" / "config.schema.yaml").read_text()
    schema = yaml.safe_load(text)
    methods = schema["properties"]["methods"]
    assert "enum" not in methods["items"] and methods["default"] == list(STUDY_METHODS)
    for key in ("training_by_method", "resources", "method_settings"):
        assert "properties" not in schema["properties"][key] and schema["properties"][key]["default"] == {}
    assert not [m for m in METHODS if re.search(rf"\b{m}\b", text) and m not in STUDY_METHODS + ("baseline",)]


@pytest.mark.parametrize(("overlay", "message"), [
    ({"methods": ["finetune", "adamatch"]}, r"config key 'methods': unknown name\(s\) 'adamatch'; expected names among finetune, mme"),
    ({"save_models": ["finetune-selected"]}, r"config key 'save_models': unknown name\(s\) 'finetune-selected'"),
    ({"resources": {"adamatch": {"mem_mb": 1000}}}, r"config key 'resources': unknown name\(s\) 'adamatch'"),
    ({"method_settings": {"mme": {"consistency_weight": 0.5}}},
     r"config key 'method_settings.mme': unknown setting\(s\) 'consistency_weight'"),
    ({"training": {"model": "resnet"}}, r"config key 'training.model': unknown name\(s\) 'resnet'"),
])
def test_a_method_name_or_setting_the_registry_lacks_is_a_config_error(workflow, overlay, message):
    result = snakemake(workflow, "--dry-run", *DEMO, write_overlay(workflow, "bad.yaml", overlay))
    assert result.returncode != 0 and re.search(message, result.stdout + result.stderr), result.stderr[-2000:]


def test_save_models_default_is_the_studys():
    from rbda.study import DEFAULT_SAVE_MODELS

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    save = schema["properties"]["save_models"]
    assert save["default"] == list(DEFAULT_SAVE_MODELS)
    assert yaml.safe_load((REPO / "config.yaml").read_text())["save_models"] == list(DEFAULT_SAVE_MODELS)


def test_selected_mme_runs_keep_their_model_by_default(workflow):
    """Every MME run writes its model; select-model copies the chosen lambda's next to the selected run."""
    target = "results/models/mme-selected/des-to-hits/shots-5/split-1.pt"
    commands = dry_run_commands(workflow, *DEMO, "--", target)
    mme = [c for c in commands if c.startswith("rbda train --method mme")]  # per_pair: every job of the pair
    assert len(mme) == 6 and all("--model results/models/mme/des-to-hits/shots-" in c for c in mme)
    select = next(c for c in commands if c.startswith("rbda select-model"))
    assert "--selected results/runs/mme-selected/des-to-hits/shots-5/split-1.json" in select
    assert "results/models/mme/des-to-hits/shots-5/lambda-0.05/split-1.pt" in select
    assert select.endswith(f"--output {target} > logs/models/mme-selected/des-to-hits/shots-5/split-1.log 2>&1")
    commands = dry_run_commands(workflow, *DEMO)
    assert not any("--model" in c for c in commands if c.startswith("rbda train --method finetune"))


def test_save_models_chooses_which_runs_keep_a_model(workflow):
    none = write_overlay(workflow, "none.yaml", {"save_models": []})
    jobs = planned_jobs(workflow, *DEMO, none)
    assert "select_model" not in jobs and jobs["train_mme"] == 12 * 3 * 2
    assert not any("--model" in c for c in dry_run_commands(workflow, *DEMO, none)
                   if c.startswith("rbda train --method mme"))
    some = write_overlay(workflow, "some.yaml", {"save_models": ["finetune", "ent-selected"]})
    jobs = planned_jobs(workflow, *EXTENDED, some)
    assert jobs["select_model"] == 12 * 3 * 2  # ent-selected only
    commands = dry_run_commands(workflow, *EXTENDED, some)
    assert all("--model results/models/finetune/" in c for c in commands if c.startswith("rbda train --method finetune"))
    assert all("--model results/models/ent/" in c for c in commands if c.startswith("rbda train --method ent"))
    assert not any("--model" in c for c in commands if c.startswith("rbda train --method mme"))
    assert all("results/runs/ent-selected/" in c for c in commands if c.startswith("rbda select-model"))


def test_one_method_subset_plans_only_its_rules(workflow):
    overlay = write_overlay(workflow, "ent.yaml", {"methods": ["ent"]})
    jobs = planned_jobs(workflow, *DEMO, overlay)
    assert jobs["train_ent"] == 12 * 3 * 2 and jobs["select_lambda"] == 12 * 3 * 2
    assert jobs["choose_lambda"] == 12
    assert not {"train_finetune", "train_mme", "train_st", "train_dann"} & set(jobs)
    commands = dry_run_commands(workflow, *DEMO, overlay, "--",
                                "results/runs/ent-selected/des-to-hits/shots-5/split-1.json")
    train = [c for c in commands if c.startswith("rbda train --method ent")]
    assert len(train) == 6  # per_pair: the choice is made on every ENT run of the pair (a job per group)
    (group,) = [c for c in train if "--shots 5 " in c and "--split 1 " in c]
    assert "--lambda 0.05 0.5 " in group
    select = next(c for c in commands if c.startswith("rbda select-lambda"))
    assert "results/runs/ent/des-to-hits/shots-5/lambda-0.05/split-1.json" in select


def test_mmefm_plans_like_a_lambda_method_with_its_options(workflow):
    overlay = write_overlay(workflow, "mmefm.yaml", {"methods": ["mmefm"],
                                                     "method_settings": {"mmefm": {"consistency_weight": 0.5}}})
    jobs = planned_jobs(workflow, *DEMO, overlay)
    assert jobs["train_mmefm"] == 12 * 3 * 2 and jobs["select_lambda"] == 12 * 3 * 2
    assert jobs["choose_lambda"] == 12
    commands = dry_run_commands(workflow, *DEMO, overlay, "--",
                                "results/runs/mmefm-selected/des-to-hits/shots-5/split-1.json")
    train = [c for c in commands if c.startswith("rbda train --method mmefm")]
    # per_pair selection: every (shots, lambda, split) run of the pair, a job per (shots, split)
    assert len(train) == 3 * 2
    assert all("--pseudo-label-threshold 0.95 --consistency-weight 0.5" in c for c in train)


def dry_run_commands(workdir: Path, *args: str) -> list[str]:
    """The shell commands a dry run would execute."""
    result = snakemake(workdir, "--dry-run", "--printshellcmds", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = "Shell command: "
    return [line.removeprefix(prefix) for line in (result.stdout + result.stderr).splitlines()
            if line.startswith(prefix)]


STUB_RBDA = """#!/usr/bin/env bash
# Records its arguments and writes the outputs a rule names (a tiny real survey for
# preprocess, so that the training jobs' memory estimate can read its footer).
echo "$*" >> "$RBDA_STUB_LOG"
args=("$@"); survey=""
for ((i = 0; i < ${#args[@]}; i++)); do
  next="${args[$((i + 1))]:-}"
  case "${args[$i]}" in
    --survey) survey="$next" ;;
    --out) mkdir -p "$next" ;;
    --output|--metrics|--model|--report)  # one path, or one per member (rbda train --lambda A B)
      for ((j = i + 1; j < ${#args[@]}; j++)); do
        out="${args[$j]}"
        [[ "$out" == --* ]] && break
        mkdir -p "$(dirname "$out")"
        if [[ "$out" == *.parquet ]]; then cp "$RBDA_STUB_DATA/$survey.parquet" "$out"; else echo '{}' > "$out"; fi
      done ;;
  esac
done
"""


def test_each_generated_training_rule_runs_its_own_method(workflow, tmp_path):
    """The adaptation rules are generated in a loop; a job must run the method of its rule.
    (Snakemake formats a rule's shell string when the job runs: a string that named the loop
    variable ran the last method of the vocabulary for every rule, which a dry run cannot show.)"""
    from rbda.registry import ADAPTATION_METHODS, LAMBDA_METHODS
    from train_helpers import write_survey_parquet

    data = tmp_path / "data"
    for i, name in enumerate(SURVEYS):
        write_survey_parquet(data, name, 200, seed=i)
    stub = tmp_path / "bin" / "rbda"
    stub.parent.mkdir()
    stub.write_text(STUB_RBDA)
    stub.chmod(0o755)
    log = tmp_path / "calls.log"
    overlay = write_overlay(workflow, "all-methods.yaml", {"methods": list(ADAPTATION_METHODS)})
    targets = [f"results/runs/{m}/des-to-hits/shots-1/lambda-0.05/split-0.json" if m in LAMBDA_METHODS
               else f"results/runs/{m}/des-to-hits/shots-1/split-0.json" for m in ADAPTATION_METHODS]
    env = dict(os.environ, RBDA_STUB_LOG=str(log), RBDA_STUB_DATA=str(data),
               PATH=os.pathsep.join([str(stub.parent), *map(str, NO_SLURM_BIN), str(Path(sys.executable).parent),
                                     os.environ.get("PATH", "")]))
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *DEMO, overlay, "--", *targets],
                            cwd=workflow, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ran = {}
    for line in log.read_text().splitlines():
        if line.startswith("train ") and "--target" in line:
            ran[re.search(r"--metrics results/runs/(\w+)/", line).group(1)] = re.search(r"--method (\w+)", line).group(1)
    assert ran == {m: m for m in ADAPTATION_METHODS}


LAMBDAS = ("0.01", "0.02", "0.03", "0.05", "0.1", "0.5", "10")  # config.yaml's lambdas, as path labels


def selection_commands(workflow: Path, *args: str) -> tuple[list[str], list[str], str | None, str]:
    """For des-to-hits, shots 5, split 3: the selection's --runs, the pair choice's --runs (none
    without a choice), the selection's --choice and the selection command."""
    target = "results/runs/mme-selected/des-to-hits/shots-5/split-3.json"
    commands = dry_run_commands(workflow, *args, "--", target)
    select = next(line for line in commands if line.startswith("rbda select-lambda"))
    runs = select.split("--runs ", 1)[1].split(" --rule", 1)[0].split()
    assert runs == [f"results/runs/mme/des-to-hits/shots-5/lambda-{lam}/split-3.json" for lam in LAMBDAS]
    choose = [line for line in commands if line.startswith("rbda choose-lambda")]
    if not choose:
        assert "--choice" not in select
        return runs, [], None, select
    (choose,) = choose
    assert choose.endswith("--output results/lambda-choices/mme/des-to-hits.json > "
                           "logs/lambda-choices/mme/des-to-hits.log 2>&1")
    choice_runs = choose.split("--runs ", 1)[1].split(" --target-data", 1)[0].split()
    # the target's labels and every split file: which splits' validation items avoid each test part
    assert " --target-data results/data/hits.parquet --target-split " in choose
    assert choose.split("--target-split ", 1)[1].split(" --rule", 1)[0].split() == [
        f"{k}=results/splits/hits/split-{k}.npz" for k in range(10)]
    choice = select.split("--choice ", 1)[1].split(" --output", 1)[0]
    assert choice == "results/lambda-choices/mme/des-to-hits.json"
    assert select.split("--rule ", 1)[1].split()[0] == choose.split("--rule ", 1)[1].split()[0]
    return runs, choice_runs, choice, select


def test_first_split_rule_is_chosen_on_every_run_of_the_pair(workflow):
    """first_split chooses on the first split's runs where they are clean for a split, else on the
    split's own runs (rbda.results.selection), so the choice reads every split's runs."""
    overlay = write_overlay(workflow, "thesis.yaml", {"lambda_selection": "first_split"})
    runs, choice_runs, choice, select = selection_commands(workflow, "--configfile", "config.yaml", overlay)
    assert sorted(choice_runs) == sorted(f"results/runs/mme/des-to-hits/shots-{n}/lambda-{lam}/split-{k}.json"
                                         for n in (1, 5, 10, 20, 40) for lam in LAMBDAS for k in range(10))
    assert "--rule first_split" in select


def test_per_split_rule_uses_only_its_own_split(workflow):
    overlay = write_overlay(workflow, "paper.yaml", {"lambda_selection": "per_split"})
    runs, choice_runs, choice, select = selection_commands(workflow, "--configfile", "config.yaml", overlay)
    assert choice is None and "--rule per_split" in select
    assert "split-0" not in select
    target = "results/runs/mme-selected/des-to-hits/shots-5/split-3.json"
    assert "choose_lambda" not in planned_jobs(workflow, "--configfile", "config.yaml", overlay, "--", target)


def test_per_pair_rule_chooses_on_every_mme_run_of_the_pair(workflow):
    runs, choice_runs, choice, select = selection_commands(workflow)
    assert "--rule per_pair" in select
    assert len(choice_runs) == 5 * 7 * 10 and set(runs) <= set(choice_runs)
    assert not any("des-to-hits" not in r for r in choice_runs)


def test_training_commands_use_one_thread_and_the_configured_options(workflow):
    target = "results/runs/mme/atlas-to-ztf/shots-40/lambda-0.5/split-9.json"
    overlay = write_overlay(workflow, "gpu.yaml", {"training": {"device": "cuda", "epoch_size": 500},
                                                   "training_by_method": {"mme": {"max_epochs": 7,
                                                                                  "memory_format": "contiguous"}}})
    commands = dry_run_commands(workflow, "--configfile", "config.yaml", overlay, "--", target)
    train = [line for line in commands if line.startswith("rbda train")]
    methods = [re.search(r"--method (\w+)", line).group(1) for line in train]
    assert methods == ["baseline", "mme"]  # the MME run and the baseline it starts from
    mme = train[1]
    for option in ("--source atlas", "--target ztf", "--shots 40", "--lambda 0.01 0.02 0.03 0.05 0.1 0.5 10 ",
                   "--split 9",
                   "--threads 1", "--device cuda", "--epoch-size 500", "--seed 2023",
                   "--init-model results/models/baseline/atlas/split-9.pt",
                   "--data atlas=results/data/atlas.parquet:results/splits/atlas/split-9.npz",
                   "--data ztf=results/data/ztf.parquet:results/splits/ztf/split-9.npz"):
        assert option in mme, option
    assert "--max-epochs 7 " in mme and "--max-epochs 1000 " in train[0]  # per-method change
    assert "--memory-format contiguous" in mme and "--memory-format auto" in train[0]
    assert "--bf16" not in mme + train[0]  # off unless configured
    baseline_data = re.findall(r"--data (\w+)=", train[0])
    assert baseline_data == SURVEYS  # a baseline is evaluated on every survey


def test_the_study_runs_with_another_backbone_unchanged_otherwise(workflow):
    """training: {model: deephits} gives every method (baseline, FT, MME) the backbone, and nothing else changes."""
    target = "results/runs/mme-selected/des-to-hits/shots-5/split-0.json"
    default = [line for line in dry_run_commands(workflow, "--", target) if line.startswith("rbda train")]
    overlay = write_overlay(workflow, "deephits.yaml", {"training": {"model": "deephits"}})
    commands = dry_run_commands(workflow, "--configfile", "config.yaml", overlay, "--", target)
    train = [line for line in commands if line.startswith("rbda train")]
    assert {re.search(r"--method (\w+)", line).group(1) for line in train} == {"baseline", "mme"}
    assert all("--backbone study_cnn" in line and "--beta 0.0" in line for line in default)
    # same commands; a dry run lists independent jobs in no fixed order
    assert sorted(line.replace("--backbone deephits", "--backbone study_cnn") for line in train) == sorted(default)
    ft = dry_run_commands(workflow, "--configfile", "config.yaml", overlay, "--",
                          "results/runs/finetune/des-to-hits/shots-5/split-0.json")
    assert any(line.startswith("rbda train --method finetune") and "--backbone deephits" in line for line in ft)


def test_training_rules_declare_resources_that_grow_with_attempts(workflow):
    overlay = write_overlay(workflow, "gpu.yaml", {"training": {"device": "cuda"}})
    result = snakemake(workflow, "--dry-run", "--configfile", "config.yaml", overlay, "--",
                       "results/runs/finetune/des-to-hits/shots-1/split-0.json")
    assert result.returncode == 0, result.stderr
    jobs = result.stdout.split("\nrule ")
    finetune = next(job for job in jobs if job.startswith("train_finetune:"))
    resources = re.search(r"resources: (.*)", finetune).group(1)
    assert "gpu=1" in resources and "mem_mb=4000" in resources and "runtime=120" in resources
    assert "benchmark: logs/benchmarks/runs/finetune/des-to-hits/shots-1/split-0.tsv" in finetune
    assert "log: logs/runs/finetune/des-to-hits/shots-1/split-0.log" in finetune
    cpu = snakemake(workflow, "--dry-run", "--", "results/runs/finetune/des-to-hits/shots-1/split-0.json")
    finetune_cpu = next(job for job in cpu.stdout.split("\nrule ") if job.startswith("train_finetune:"))
    assert "gpu=0" in re.search(r"resources: (.*)", finetune_cpu).group(1)


def test_training_jobs_ask_for_the_memory_their_surveys_need(workflow):
    """mem_mb is a floor; with the surveys' Parquet files present it grows with their rows."""
    from rbda.resources import BYTES_PER_STAMP, PROCESS_MB
    from train_helpers import write_survey_parquet

    (workflow / "results" / "data").mkdir(parents=True)
    for name, rows in (("des", 3000), ("hits", 2000)):
        write_survey_parquet(workflow / "results" / "data", name, rows, seed=1)
    overlay = write_overlay(workflow, "small.yaml", {"resources": {"finetune": {"mem_mb": 100, "runtime": 120}}})
    result = snakemake(workflow, "--dry-run", "--configfile", "config.yaml", overlay, "--",
                       "results/runs/finetune/des-to-hits/shots-1/split-0.json")
    assert result.returncode == 0, result.stderr
    finetune = next(job for job in result.stdout.split("\nrule ") if job.startswith("train_finetune:"))
    expected = PROCESS_MB + math.ceil(1.1 * 5000 * BYTES_PER_STAMP / 2**20)
    assert f"mem_mb={expected}," in re.search(r"resources: (.*)", finetune).group(1)


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"pairs": ["des-to-des"]}, "config key 'pairs[0]' ('des-to-des'): source and target are the same survey"),
        ({"pairs": ["hits-to-des", "hits-to-kepler"]}, "config key 'pairs[1]' ('hits-to-kepler'): target 'kepler' is not a configured survey"),
        ({"shots": [1, 0]}, "On instance['shots'][1]"),
        ({"lambdas": []}, "On instance['lambdas']"),
        ({"surveys": {"kepler": {"source": "synthetic", "synthetic_size": 100}}},
         "config key 'surveys.kepler': a survey other than hits, des, ztf, atlas needs its declaration"),
        ({"surveys": {"ztf": {"source": "path", "path": "x", "declare": {
            "stamp_size": 63, "layouts": {"pickle": {"reader": "ztf_pickle"}}, "class_map": {"real": ["a"], "bogus": ["b"]}}}}},
         "config key 'surveys.ztf.declare': ztf is a shipped survey"),
        ({"lambdas": [0.1, 0.1000000001]}, "config key 'lambdas': 0.1 and 0.1000000001 are the same value in paths"),
        ({"predict": {"inputs": ["a.avro"]}}, "config key 'predict': give both 'inputs' and 'models'"),
        ({"predict": {"inputs": ["a.avro"], "models": ["finetune/des-to-hits/shots-1/split-0"]}},
         "config key 'predict.models': 'finetune/des-to-hits/shots-1/split-0' is not a model this study writes"),
        ({"predict": {"inputs": ["x/night.avro", "y/night.avro"], "models": ["baseline/des/split-0"]}},
         "config key 'predict.inputs': 'x/night.avro' and 'y/night.avro' have the same name 'night'"),
        ({"predict": {"threshold": 1.5}}, "On instance['predict']['threshold']"),
    ],
)
def test_bad_config_stops_before_planning_naming_the_key(workflow, overlay, message):
    path = write_overlay(workflow, "bad.yaml", overlay)
    result = snakemake(workflow, "--dry-run", "--configfile", "config.yaml", path)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert not (workflow / "results").exists()


def test_predict_scores_each_input_with_each_configured_model(workflow):
    (workflow / "alerts").mkdir()
    (workflow / "own.pt").write_bytes(b"")  # planning only checks that it exists
    overlay = write_overlay(workflow, "predict.yaml", {"predict": {
        "inputs": ["alerts/", "night.2024.parquet"], "threshold": 0.8, "skip_bad": True,
        "models": ["mme-selected/des-to-hits/shots-5/split-1", "baseline/des/split-0", "own.pt"]}})
    (workflow / "night.2024.parquet").write_bytes(b"")
    assert "predict_alerts" not in planned_jobs(workflow, *DEMO)  # not configured: no jobs
    jobs = planned_jobs(workflow, *DEMO, overlay, "--", "predict")
    assert jobs["predict_alerts"] == jobs["prediction_gallery"] == 3 * 2 and jobs["predict"] == 1
    assert "aggregate" not in jobs
    assert planned_jobs(workflow, *DEMO, overlay)["predict_alerts"] == 3 * 2  # configured: part of `all`
    commands = [c for c in dry_run_commands(workflow, *DEMO, overlay, "--", "predict") if c.startswith("rbda predict")]
    assert ("rbda predict --model results/models/mme-selected/des-to-hits/shots-5/split-1.pt --input alerts"
            " --output results/predictions/mme-selected/des-to-hits/shots-5/split-1/alerts.parquet"
            " --threshold 0.8 --device auto --threads 1 --skip-bad"
            " > logs/predictions/mme-selected/des-to-hits/shots-5/split-1/alerts.log 2>&1") in commands
    assert any("--model own.pt --input night.2024.parquet --output results/predictions/own/night.parquet" in c
               for c in commands)


def test_predict_target_scores_the_real_ztf_packets(workflow, real_samples):
    """One real job: the 20 real ZTF packets scored by a model file (bad ones listed), with its log and benchmark."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from rbda.learn.models import StampClassifier, save_model_file

    packets = real_samples / "ztf_avro"
    if not packets.is_dir():
        pytest.skip(f"no ZTF alert packets at {packets}")
    save_model_file(workflow / "tiny.pt", StampClassifier("linear"), {"method": "baseline", "source": "ztf"})
    overlay = write_overlay(workflow, "predict.yaml", {"predict": {"inputs": [str(packets)], "models": ["tiny.pt"],
                                                                    "skip_bad": True}})
    result = snakemake(workflow, "--configfile", "config.yaml", "presets/demo.yaml", overlay,
                       "--cores", "1", "--", "predict")
    assert result.returncode == 0, result.stdout + result.stderr
    table = pq.read_table(workflow / "results" / "predictions" / "tiny" / "ztf_avro.parquet")
    bad = pcsv.read_csv(workflow / "results" / "predictions" / "tiny" / "ztf_avro.bad.csv")
    assert table.num_rows + bad.num_rows == len(list(packets.glob("*.avro"))) == 20
    assert table.num_rows > 0 and all("got 48x63" in reason for reason in bad.column("reason").to_pylist())
    assert set(table.column("model_source").to_pylist()) == {"ztf"}
    assert (workflow / "logs" / "predictions" / "tiny" / "ztf_avro.log").is_file()
    assert (workflow / "logs" / "benchmarks" / "predictions" / "tiny" / "ztf_avro.tsv").is_file()
    gallery = workflow / "results" / "predictions" / "tiny" / "ztf_avro.gallery.png"
    assert gallery.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_subset_of_pairs_plans_only_those_pairs(workflow):
    path = write_overlay(workflow, "pairs.yaml", {"pairs": ["des-to-hits", "hits-to-des"]})
    jobs = planned_jobs(workflow, *DEMO, path)
    assert jobs["train_finetune"] == 2 * 3 * 2 and jobs["train_mme"] == 2 * 3 * 2
    assert jobs["train_baseline"] == 4 * 2  # baselines of every survey: the baseline table needs them


def test_local_source_is_checked_at_run_time_and_recorded(workflow):
    """`source: path` needs no data to plan; running its first job checks the path."""
    target = "resources/raw/des.local.json"
    missing = snakemake(workflow, "--cores", "1", "--", target)
    assert missing.returncode != 0
    assert "config key 'surveys.des.path': resources/raw/des does not exist" in missing.stdout + missing.stderr
    assert not (workflow / target).exists()

    stamp = workflow / "resources" / "raw" / "des" / "2013" / "srch1.gif"
    stamp.parent.mkdir(parents=True)
    stamp.write_bytes(b"GIF89a")
    done = snakemake(workflow, "--cores", "1", "--", target)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((workflow / target).read_text())
    assert manifest["survey"] == "des"
    [source] = manifest["sources"]
    assert [f["bytes"] for f in source["files"]] == [6]
    assert planned_jobs(workflow, "--", target) == {}


@pytest.fixture()
def archive_server(tmp_path):
    """A local HTTP server (127.0.0.1) serving one raw archive, hits.tar.gz."""
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "hits.tar.gz", "w:gz") as tar:
        data = b"chunk bytes"
        info = tarfile.TarInfo("chunks/chunk_0.pkl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    archive = served / "hits.tar.gz"
    yield f"http://127.0.0.1:{server.server_address[1]}/hits.tar.gz", hashlib.sha256(archive.read_bytes()).hexdigest()
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_url_source_is_downloaded_checked_and_unpacked(workflow, archive_server):
    url, sha256 = archive_server
    good = write_overlay(workflow, "url.yaml", {"surveys": {"hits": {"source": "url", "url": url, "sha256": sha256}}})
    result = snakemake(workflow, "--cores", "1", "--configfile", "config.yaml", good, "--", "resources/raw/hits")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (workflow / "resources/raw/hits/chunks/chunk_0.pkl").read_bytes() == b"chunk bytes"
    assert (workflow / "resources/raw/archives/hits.download").is_file()


def test_url_source_with_a_wrong_checksum_fails_leaving_nothing(workflow, archive_server):
    url, _ = archive_server
    bad = write_overlay(workflow, "url.yaml", {"surveys": {"hits": {"source": "url", "url": url, "sha256": "0" * 64}}})
    result = snakemake(workflow, "--cores", "1", "--configfile", "config.yaml", bad, "--", "resources/raw/hits")
    assert result.returncode != 0
    assert "sha256 mismatch" in (workflow / "logs/raw/hits.download.log").read_text()
    assert not (workflow / "resources/raw/hits").exists()
    assert [p for p in (workflow / "resources").rglob("*") if p.is_file()] == []


def test_lint_passes(workflow):
    result = snakemake(workflow, "--lint", *DEMO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


# ---------------------------------------------------------------- the demo study


@pytest.fixture()
def demo(demo_study) -> dict:
    """The demo study (conftest.demo_study, run once per session)."""
    return demo_study


@pytest.mark.slow
def test_demo_writes_every_output_of_the_study(demo):
    results = demo["workdir"] / "results"
    for path in expected_outputs(SURVEYS, galleries=True):
        assert (results / path).is_file() and (results / path).stat().st_size > 0, path
    runs = (results / "aggregate" / "runs.txt").read_text().split()
    assert len(runs) == 8 + 72 + 144 + 72
    for path in runs:
        run = json.loads((demo["workdir"] / path).read_text())
        assert run["schema"] == "rbda.run/1"
        method = path.split("/")[2]
        assert run["method"] == ("mme" if method == "mme-selected" else method)
        assert run["training"]["threads"] == 1
    selected = json.loads((results / "runs/mme-selected/des-to-hits/shots-5/split-1.json").read_text())
    assert selected["selection"]["rule"] == "per_pair"
    assert {c["lambda"] for c in selected["selection"]["candidates"]} == {0.05, 0.5}
    assert (demo["workdir"] / "logs/runs/mme/des-to-hits/shots-5/split-1.lambda-0.05+0.5.log").is_file()
    assert (demo["workdir"] / "logs/benchmarks/runs/baseline/hits/split-0.tsv").is_file()


@pytest.mark.slow
def test_second_run_with_nothing_changed_does_nothing(demo):
    assert planned_jobs(demo["workdir"], *DEMO, pythonpath=demo["src"]) == {}


@pytest.mark.slow
def test_adding_a_shot_count_plans_only_its_jobs_and_reporting(demo):
    overlay = write_overlay(demo["workdir"], "more-shots.yaml", {"shots": [1, 5, 10, 20]})
    assert planned_jobs(demo["workdir"], *DEMO, overlay, pythonpath=demo["src"]) == {
        "train_finetune": 12 * 2,
        "train_mme": 12 * 2,
        # per_pair (the default) chooses one lambda per pair on every shot count, so every
        # selection of every pair is made again, and its model copied again
        "choose_lambda": 12,
        "select_lambda": 12 * 4 * 2,
        "select_model": 12 * 4 * 2,
        "aggregation_inputs": 1,
        "aggregate": 1,
        "all": 1,
    }


@pytest.mark.slow
def test_adding_a_lambda_plans_only_its_runs_and_their_selection(demo):
    overlay = write_overlay(demo["workdir"], "more-lambdas.yaml", {"lambdas": [0.05, 0.5, 0.1]})
    assert planned_jobs(demo["workdir"], *DEMO, overlay, pythonpath=demo["src"]) == {
        "train_mme": 12 * 3 * 2,  # one job per group, training only the new lambda
        "choose_lambda": 12,
        "select_lambda": 12 * 3 * 2,
        "select_model": 12 * 3 * 2,
        "aggregation_inputs": 1,
        "aggregate": 1,
        "all": 1,
    }


@pytest.mark.slow
def test_adding_a_method_module_plans_only_its_runs_and_editing_a_sibling_nothing(demo):
    """A method is one module (rbda.registry): adding one, or editing a method the study does not
    run, changes no finished run's code hash; asking for the new method plans only its runs and
    what depends on them."""
    methods = demo["src"] / "rbda" / "learn" / "methods"
    added = methods / "mmecopy.py"
    sibling = methods / "dann.py"
    original, stat = sibling.read_text(), sibling.stat()
    try:
        added.write_text(
            "from rbda.learn.methods.mme import MinimaxEntropy\n"
            "from rbda.registry import MethodDeclaration\n\n"
            'METHOD = MethodDeclaration(name="mmecopy", label="MME copy", cls="MinimaxEntropyCopy", order=999,\n'
            "                           lambda_grid=True)\n\n\n"
            "class MinimaxEntropyCopy(MinimaxEntropy):\n"
            "    name = METHOD.name\n")
        sibling.write_text(original + "\n# an edit to a method the demo does not run\n")
        assert planned_jobs(demo["workdir"], *DEMO, pythonpath=demo["src"]) == {}
        overlay = write_overlay(demo["workdir"], "mmecopy.yaml", {"methods": ["finetune", "mme", "mmecopy"]})
        assert planned_jobs(demo["workdir"], *DEMO, overlay, pythonpath=demo["src"]) == {
            "train_mmecopy": 12 * 3 * 2, "choose_lambda": 12, "select_lambda": 12 * 3 * 2,
            "aggregation_inputs": 1, "aggregate": 1, "all": 1}
    finally:
        added.unlink(missing_ok=True)
        sibling.write_text(original)
        os.utime(sibling, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(demo["workdir"], *DEMO, pythonpath=demo["src"]) == {}


@pytest.mark.slow
def test_editing_report_code_reruns_only_reporting(demo):
    code = demo["src"] / "rbda" / "results" / "figures.py"
    original, stat = code.read_text(), code.stat()
    try:
        code.write_text(original + "\n# an edit to the figure code\n")
        assert planned_jobs(demo["workdir"], *DEMO, pythonpath=demo["src"]) == {"aggregate": 1, "all": 1}
    finally:
        code.write_text(original)
        os.utime(code, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.slow
def test_editing_learning_code_reruns_training(demo):
    code = demo["src"] / "rbda" / "learn" / "entropy.py"
    original, stat = code.read_text(), code.stat()
    try:
        code.write_text(original + "\n# an edit to the learning core\n")
        assert planned_jobs(demo["workdir"], *DEMO, pythonpath=demo["src"]) == {
            "train_baseline": 8, "train_finetune": 72, "train_mme": 72, "choose_lambda": 12, "select_lambda": 72,
            "select_model": 72, "aggregation_inputs": 1, "aggregate": 1, "all": 1}
    finally:
        code.write_text(original)
        os.utime(code, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(demo["workdir"], *DEMO, pythonpath=demo["src"]) == {}


@pytest.mark.slow
def test_snakemake_report_bundles_figures_with_captions(demo):
    result = snakemake(demo["workdir"], *DEMO, "--report", "report.zip", pythonpath=demo["src"])
    assert result.returncode == 0, result.stderr[-4000:]
    assert (demo["workdir"] / "report.zip").stat().st_size > 0


# ---------------------------------------------------------------- stamp_classifier target


def test_stamp_classifier_target_plans_runs_per_variant_with_distinct_seeds(workflow):
    """The demo preset's section: N runs per variant, one balanced split, the summary; absent = not in `all`."""
    assert "stamp_classifier" not in planned_jobs(workflow, *DEMO)  # no section configured: not part of `all`
    args = ("--configfile", "config.yaml", "presets/demo.yaml", "presets/stamp_classifier.yaml")
    jobs = planned_jobs(workflow, *args, "--", "stamp_classifier")
    assert jobs["stamp_classifier_train"] == 12 and jobs["stamp_classifier_split"] == 1
    assert jobs["stamp_classifier"] == 1 and "train_baseline" not in jobs
    assert planned_jobs(workflow, *args)["stamp_classifier"] == 1  # configured: `all` includes it
    commands = dry_run_commands(workflow, *args, "--", "stamp_classifier")
    train = [c for c in commands if c.startswith("rbda train")]
    seeds = {re.search(r"--backbone (\w+) --beta (\S+)", c).groups(): [] for c in train}
    for c in train:
        seeds[re.search(r"--backbone (\w+) --beta (\S+)", c).groups()].append(int(re.search(r"--seed (\d+)", c).group(1)))
    assert set(seeds) == {("study_cnn", "0"), ("deephits_unrotated", "0"), ("deephits", "0"), ("deephits", "0.5")}
    assert all(sorted(s) == [2023, 2024, 2025] for s in seeds.values())
    assert all("--task multiclass" in c and "--epoch-size 300" in c for c in train)
    (split,) = [c for c in commands if c.startswith("rbda split")]
    assert "--task multiclass" in split and "--val-per-class 10 --test-per-class 10" in split
    # its section of report.html: the aggregation reads its outputs when configured, only then
    (aggregate,) = [c for c in dry_run_commands(workflow, *args) if c.startswith("rbda aggregate")]
    assert "--stamp-classifier results/stamp_classifier " in aggregate
    (aggregate,) = [c for c in dry_run_commands(workflow, *DEMO) if c.startswith("rbda aggregate")]
    assert "--stamp-classifier" not in aggregate


def test_stamp_classifier_section_is_checked(workflow):
    overlay = write_overlay(workflow, "sc.yaml", {"stamp_classifier": {
        "survey": "ztf", "variants": [{"name": "a", "model": "resnet"}, {"name": "b", "model": "deephits"}]}})
    result = snakemake(workflow, "--dry-run", "--configfile", "config.yaml", overlay)
    assert result.returncode != 0
    assert "config key 'stamp_classifier.variants[0].model': unknown name(s) 'resnet'" in result.stdout + result.stderr


def test_editing_data_preparation_code_reruns_preprocessing(workflow, tmp_path):
    """Editing a reader, the FITS decoder or the preprocessing (rbda.provenance.DATA_PREPARATION) reruns
    preprocessing, as editing the learning core reruns training; rerun_on_code_change: false opts out.
    Non-slow: a stand-in rbda makes one survey's Parquet file, then dry runs plan on it."""
    import shutil

    from train_helpers import write_survey_parquet

    data = tmp_path / "data"
    write_survey_parquet(data, "des", 50, seed=0)
    stub = tmp_path / "bin" / "rbda"
    stub.parent.mkdir()
    stub.write_text(STUB_RBDA)
    stub.chmod(0o755)
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "rbda", src / "rbda", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, RBDA_STUB_LOG=str(tmp_path / "calls.log"), RBDA_STUB_DATA=str(data), PYTHONPATH=str(src),
               PATH=os.pathsep.join([str(stub.parent), *map(str, NO_SLURM_BIN), str(Path(sys.executable).parent),
                                     os.environ.get("PATH", "")]))
    target = ("--", "results/data/des.parquet")
    made = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *DEMO, *target], cwd=workflow, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    assert planned_jobs(workflow, *DEMO, *target, pythonpath=src) == {}
    opt_out = write_overlay(workflow, "no-rerun.yaml", {"rerun_on_code_change": False})
    for edited in ("ingest/fits.py", "ingest/readers/des.py", "ingest/preprocess.py"):
        code = src / "rbda" / edited
        original = code.read_text()
        code.write_text(original + "\n# an edit to the data preparation\n")
        try:
            assert planned_jobs(workflow, *DEMO, *target, pythonpath=src) == {"preprocess_survey": 1}, edited
        finally:
            code.write_text(original)
    assert planned_jobs(workflow, *DEMO, *target, pythonpath=src) == {}
    fits_code = src / "rbda" / "ingest" / "fits.py"
    fits_code.write_text(fits_code.read_text() + "\n# edited\n")
    # opting out keeps the finished Parquet file (the parameter's text changes once, to 'not tracked')
    made = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *DEMO, opt_out, *target], cwd=workflow,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-3000:]
    (src / "rbda" / "ingest" / "store.py").write_text((src / "rbda" / "ingest" / "store.py").read_text() + "\n# x\n")
    assert planned_jobs(workflow, *DEMO, opt_out, *target, pythonpath=src) == {}
