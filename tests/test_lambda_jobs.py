"""The workflow's jobs of a lambda method (config lambda_jobs, rbda.lambda_jobs): one job per
(method, pair, shots, split) trains the lambdas as members; adding a lambda later trains only it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from conftest import DEMO, REPO, copy_workflow
from rbda.lambda_jobs import LAMBDA_JOBS, grid_runtime, split_grid
from test_workflow import NO_SLURM_BIN, STUB_RBDA, dry_run_commands, no_slurm_client, planned_jobs, write_overlay  # noqa: F401


def test_split_grid_puts_lambdas_missing_anywhere_in_the_grid(tmp_path):
    done = [tmp_path / f"done-{i}" for i in range(2)]
    for p in done:
        p.touch()
    absent = tmp_path / "absent"
    assert split_grid({"0.1": done, "0.5": [done[0], absent], "1": [absent]}) == (["0.5", "1"], ["0.1"])
    # nothing missing (a finished study): a rerun retrains whole grids
    assert split_grid({"0.1": done, "0.5": done[:1]}) == (["0.1", "0.5"], [])
    assert split_grid({"0.1": [absent], "0.5": [absent]}) == (["0.1", "0.5"], [])


def test_grid_job_time_limit_grows_with_members_and_attempts():
    assert grid_runtime(360, 7, 1) == 2520 and grid_runtime(360, 1, 2) == 720


def test_schema_enum_is_the_vocabulary():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert tuple(schema["properties"]["lambda_jobs"]["enum"]) == LAMBDA_JOBS
    assert yaml.safe_load((REPO / "config.yaml").read_text())["lambda_jobs"] == LAMBDA_JOBS[0]


def test_per_lambda_setting_keeps_one_job_per_lambda(tmp_path):
    workflow = copy_workflow(tmp_path / "study")
    grid = planned_jobs(workflow, *DEMO)
    overlay = write_overlay(workflow, "per-lambda.yaml", {"lambda_jobs": "per_lambda"})
    per_lambda = planned_jobs(workflow, *DEMO, overlay)
    assert grid["train_mme"] == 12 * 3 * 2 and per_lambda["train_mme"] == 12 * 3 * 2 * 2
    assert {k: v for k, v in grid.items() if k != "train_mme"} == \
        {k: v for k, v in per_lambda.items() if k != "train_mme"}
    target = "results/runs/mme/des-to-hits/shots-5/lambda-0.5/split-1.json"
    (one,) = [c for c in dry_run_commands(workflow, *DEMO, overlay, "--", target) if c.startswith("rbda train --method mme")]
    assert " --lambda 0.5 --split 1 " in one


SMALL = {"pairs": ["des-to-hits"], "shots": [1], "splits": 1, "methods": ["mme"], "save_models": []}


def _stubbed_run(workflow: Path, stub_dir: Path, *args: str):
    import subprocess

    env = dict(os.environ, RBDA_STUB_LOG=str(stub_dir / "calls.log"), RBDA_STUB_DATA=str(stub_dir / "data"),
               PATH=os.pathsep.join([str(stub_dir / "bin"), *map(str, NO_SLURM_BIN),
                                     str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=workflow, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)


def test_a_grid_job_trains_every_lambda_and_an_added_lambda_alone(tmp_path):
    """With a stand-in `rbda` writing the outputs it is given: one job writes both lambdas' runs;
    then nothing is left to do; adding a lambda plans one job per group training only it."""
    from train_helpers import write_survey_parquet

    workflow = copy_workflow(tmp_path / "study")
    stub_dir = tmp_path / "stub"
    for i, name in enumerate(("hits", "des", "ztf", "atlas")):
        write_survey_parquet(stub_dir / "data", name, 200, seed=i)
    (stub_dir / "bin").mkdir()
    (stub_dir / "bin" / "rbda").write_text(STUB_RBDA)
    (stub_dir / "bin" / "rbda").chmod(0o755)
    small = write_overlay(workflow, "small.yaml", SMALL)
    runs = [f"results/runs/mme/des-to-hits/shots-1/lambda-{lam}/split-0.json" for lam in ("0.05", "0.5")]
    result = _stubbed_run(workflow, stub_dir, *DEMO, small, "--", *runs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    calls = [c for c in (stub_dir / "calls.log").read_text().splitlines() if c.startswith("train --method mme")]
    assert len(calls) == 1 and " --lambda 0.05 0.5 " in calls[0]
    assert all((workflow / r).is_file() for r in runs)
    assert planned_jobs(workflow, *DEMO, small, "--", *runs) == {}

    more = write_overlay(workflow, "more.yaml", {**SMALL, "lambdas": [0.05, 0.5, 0.1]})
    added = "results/runs/mme/des-to-hits/shots-1/lambda-0.1/split-0.json"
    assert planned_jobs(workflow, *DEMO, more, "--", *runs, added) == {"train_mme": 1}
    (train,) = [c for c in dry_run_commands(workflow, *DEMO, more, "--", *runs, added) if c.startswith("rbda train")]
    assert " --lambda 0.1 --split 0 " in train and f"--metrics {added} " in train
