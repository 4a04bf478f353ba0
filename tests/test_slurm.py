"""The Slurm path, run through a real single-node Slurm cluster (issue 6).

``tests/slurm/cluster.sh`` installs Debian's slurm-wlm and munge and starts a
cluster on this host (partitions rbda-cpu and rbda-gpu, two stand-in GPUs).
A small study (config.yaml + presets/demo.yaml + tests/slurm/scenario.yaml:
the demo's surveys and training on one pair and one split, every rule of the
workflow in 30 jobs) then runs through real ``sbatch`` with the user profile
``profiles/slurm`` merged with ``tests/slurm/profile-overlay.yaml`` (the test
cluster's partitions, no account, squeue status checks, fast polling, bundles
of up to eight, so that each bundled rule makes a bundle of several jobs).

The bundles scenario, shared by the tests below up to the job arrays:

1. reference: the same workflow and config, run locally (profiles/local);
2. Slurm run 1, retries 0: the fault wrapper (tests/slurm/fault-bin/rbda)
   holds one MME training job; the test cancels its Slurm job with scancel
   while it runs; the run must fail and say which job;
3. a dry-run plans exactly the jobs whose outputs are missing;
4. Slurm run 2 with the profile's retries: the same job's first attempt fails
   (fault wrapper), Snakemake resubmits it with twice the runtime, the run
   completes and its outputs equal the local run's.

Then a second scenario runs ``profiles/slurm-arrays`` (job arrays
instead of bundles; issue 17) on two MME runs copied from the same reference
(see "job arrays" below).

Needs root (daemons, apt, /etc/slurm). Skips otherwise; under CI=true a skip
is a failure (conftest.skip_unless_available).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_snakemake as run_snakemake_locally, scontrol_that_fails_at_once, \
    skip_unless_available

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_TESTS = REPO / "tests" / "slurm"
CLUSTER_SCRIPT = SLURM_TESTS / "cluster.sh"
CLUSTER_NAME = "rbdatest"  # ClusterName in tests/slurm/slurm.conf.in
FAULT_BIN = SLURM_TESTS / "fault-bin"
VENV_BIN = Path(sys.executable).parent
# The test's study, relative to a copy of the workflow: the demo on one pair and one split.
CONFIG_FILES = [Path("config.yaml"), Path("presets/demo.yaml"), Path("tests/slurm/scenario.yaml")]
# Top-level entries of the checkout that are not part of the workflow: never
# copied into the run directories.
NOT_WORKFLOW = {
    ".git", ".venv", ".snakemake", ".pytest_cache", "results", "resources", "logs",
    "build", "dist", ".whl",
}
TRAINING_RULES = {"train_baseline", "train_finetune", "train_mme"}
RULE_OF_RUN_DIR = {
    "baseline": "train_baseline",
    "finetune": "train_finetune",
    "mme": "train_mme",
    "mme-selected": "select_lambda",
}


def rule_of_output(path: str) -> str:
    """The rule that writes ``path``: a run JSON (results/runs/METHOD/...) or a pair's lambda choice."""
    parts = Path(path).parts
    return "choose_lambda" if parts[1] == "lambda-choices" else RULE_OF_RUN_DIR[parts[2]]
# The job the fault wrapper holds (run 1) and fails once (run 2), by its output.
FAULT_TARGET = "results/runs/mme/hits-to-des/shots-5/lambda-0.5/split-0.json"
FAULT_TARGET_WILDCARDS = {
    "source": "hits", "target": "des", "shots": "5", "lam": "0.5", "split": "0",
}
SNAKEMAKE_TIMEOUT_S = 1800
CANCEL_WAIT_S = 1500


# ------------------------------------------------------------------ helpers


def deep_merge(base: dict, overlay: dict) -> dict:
    """``overlay`` merged into a copy of ``base``: mappings key by key, None removes."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def copy_workflow(destination: Path) -> Path:
    """The checkout copied to ``destination``, without outputs, environments or git data."""
    destination.mkdir(parents=True)
    for entry in REPO.iterdir():
        if entry.name in NOT_WORKFLOW:
            continue
        if entry.is_dir():
            shutil.copytree(entry, destination / entry.name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(entry, destination / entry.name)
    return destination


def job_stats(output: str) -> Counter:
    """Snakemake's 'Job stats' table (rule -> number of jobs), 'total' left out."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Job stats:"), None)
    assert start is not None, "no 'Job stats:' table in the Snakemake output:\n" + tail(output)
    counts = Counter()
    for line in lines[start + 3:]:
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            break
        if fields[0] != "total":
            counts[fields[0]] = int(fields[1])
    return counts


def files_under(root: Path, *parts: str) -> set[str]:
    """Paths (relative to ``root``) of the files below ``root/part`` for each part."""
    return {
        str(path.relative_to(root))
        for part in parts
        for path in (root / part).rglob("*")
        if path.is_file()
    }


def run_identity(path: Path) -> tuple:
    run = json.loads(path.read_text())
    return tuple(run.get(key) for key in
                 ("schema", "method", "source", "target", "split", "shots", "lambda", "seed"))


def minutes(slurm_time: str) -> int:
    """Slurm's TimeLimit ([D-]HH:MM:SS or MM:SS) in whole minutes."""
    days, _, clock = slurm_time.rpartition("-")
    fields = [int(f) for f in clock.split(":")]
    while len(fields) < 3:
        fields.insert(0, 0)
    hours, mins, secs = fields
    assert secs == 0, slurm_time
    return (int(days or 0) * 24 + hours) * 60 + mins


@dataclass
class SlurmJob:
    """One real Slurm job, from ``scontrol show job`` and its batch script."""

    fields: dict[str, str]
    targets: list[tuple[str, dict[str, str]]]  # (rule, wildcards) per Snakemake job
    attempt: int

    @property
    def job_id(self) -> str:
        return self.fields["JobId"]

    @property
    def rules(self) -> set[str]:
        return {rule for rule, _ in self.targets}


def parse_batch_script(script: str) -> tuple[list[tuple[str, dict[str, str]]], int]:
    """The Snakemake jobs (``--target-jobs``) and ``--attempt`` of a submitted script."""
    words = script.replace("'", " ").split()
    start = words.index("--target-jobs") + 1
    targets = []
    for word in words[start:]:
        if word.startswith("--"):
            break
        rule, _, wildcard_text = word.partition(":")
        wildcards = dict(item.split("=", 1) for item in wildcard_text.split(",") if item)
        targets.append((rule, wildcards))
    attempt = int(words[words.index("--attempt") + 1])
    return targets, attempt


def array_task_command(script: str, task_id: int) -> str:
    """The Snakemake command that array task ``task_id`` of a submitted script runs.

    The plugin's array script is the command of the array's first task, then
    ``--slurm-jobstep-array-execs=PAYLOAD``: base64 JSON mapping every other
    task id to its command (zlib-compressed, hex); the job step picks its own.
    """
    match = re.search(r"--slurm-jobstep-array-execs[= ]'?([A-Za-z0-9+/=]+)", script)
    assert match, "an array job's script without --slurm-jobstep-array-execs:\n" + script
    execs = json.loads(base64.b64decode(match.group(1)))
    if str(task_id) not in execs:  # the first task runs the script's own command
        return script[:match.start()]
    return zlib.decompress(bytes.fromhex(execs[str(task_id)])).decode()


def slurm_jobs_named(run_id: str) -> list[SlurmJob]:
    """Every Slurm job a Snakemake run submitted (job name = the run's Slurm run ID); an
    array job gives one SlurmJob per task (fields ArrayJobId, ArrayTaskId)."""
    listing = subprocess.run(["scontrol", "--oneliner", "--details", "show", "job"], check=True,
                             capture_output=True, text=True).stdout
    jobs = []
    for line in listing.splitlines():
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        if fields.get("JobName") != run_id:
            continue
        script = subprocess.run(
            ["scontrol", "write", "batch_script", fields["JobId"], "-"],
            check=True, capture_output=True, text=True,
        ).stdout
        if "ArrayTaskId" in fields:
            assert fields["ArrayTaskId"].isdigit(), f"array tasks not yet split: {line}"
            script = array_task_command(script, int(fields["ArrayTaskId"]))
        targets, attempt = parse_batch_script(script)
        jobs.append(SlurmJob(fields, targets, attempt))
    return sorted(jobs, key=lambda job: int(job.job_id))


def write_job_table(path: Path, jobs: list[SlurmJob]) -> None:
    """What each Slurm job asked for and got, for a person reading a failed test."""
    columns = ["JobId", "JobState", "Partition", "TresPerJob", "JOB_GRES", "NumCPUs",
               "MinMemoryNode", "TimeLimit"]
    rows = ["\t".join([*columns, "attempt", "snakemake_jobs"])]
    for job in jobs:
        members = " ".join(f"{rule}:{','.join(f'{k}={v}' for k, v in wildcards.items())}"
                           for rule, wildcards in job.targets)
        rows.append("\t".join([*(job.fields.get(c, "") for c in columns), str(job.attempt),
                               members]))
    path.write_text("\n".join(rows) + "\n")


def slurm_run_id(output: str) -> str:
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, "no 'SLURM run ID' in the Snakemake output: did it use the Slurm executor?"
    return match.group(1)


class SnakemakeProcess:
    """A snakemake command running in the background, its output in ``log_path``."""

    def __init__(self, workdir: Path, args: list[str], env: dict[str, str], log_name: str):
        self.log_path = workdir / log_name
        with open(self.log_path, "w") as log:
            # Its own session: a timed-out run is stopped with all its children.
            self.process = subprocess.Popen(
                [str(VENV_BIN / "snakemake"), *args], cwd=workdir, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.running():
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=120)

    def finish(self, timeout: float = SNAKEMAKE_TIMEOUT_S) -> subprocess.CompletedProcess:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"snakemake ran past {timeout} s: {tail(self.log_path.read_text())}")
        return subprocess.CompletedProcess(self.process.args, self.process.returncode,
                                           stdout=self.log_path.read_text())


def run_snakemake(workdir: Path, args: list[str], env: dict[str, str], log_name: str,
                  ) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir``; its output also goes to ``workdir/log_name``."""
    return SnakemakeProcess(workdir, args, env, log_name).finish()


def group_errors(output: str) -> list[str]:
    """Snakemake's reports of failed bundles: 'message: Error in group ...' up to 'Logfile'."""
    return re.findall(r"^ +message: Error in group .*?(?=^Logfile |\Z)", output,
                      flags=re.MULTILINE | re.DOTALL)


def names_output(text: str, path: str) -> bool:
    """Whether Snakemake's job report in ``text`` has ``path`` among a job's outputs (its
    ``output:`` line lists them comma-separated, in the rule's order)."""
    return re.search(rf"^ *output: (?:\S+, )*{re.escape(path)}(?:,|$)", text, flags=re.MULTILINE) is not None


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node Slurm cluster on this host; stopped afterwards, always."""
    skip_unless_available(os.geteuid() == 0,
                          "the Slurm test starts daemons, installs packages and "
                          "writes /etc/slurm: it needs root")
    install = subprocess.run([str(CLUSTER_SCRIPT), "install"], capture_output=True,
                             text=True, timeout=900)
    skip_unless_available(install.returncode == 0,
                          "could not install slurm-wlm and munge with apt-get: "
                          + tail(install.stdout + install.stderr, 15))
    existing = Path("/etc/slurm/slurm.conf")
    skip_unless_available(
        not existing.exists() or "rbda tests/slurm/cluster.sh" in existing.read_text(),
        f"{existing} belongs to another Slurm installation; the test will not replace it",
    )
    state = tmp_path_factory.mktemp("slurm-state")
    try:
        start = subprocess.run([str(CLUSTER_SCRIPT), "start", str(state)],
                               capture_output=True, text=True, timeout=120)
        if start.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{tail(p.read_text(), 20)}"
                             for p in sorted(state.glob("*.log")))
            pytest.fail(f"the test cluster did not start:\n{start.stdout}{start.stderr}\n{logs}")
        yield state
    finally:
        subprocess.run([str(CLUSTER_SCRIPT), "stop", str(state)], timeout=120)
        stray = kill_job_processes(CLUSTER_NAME)
        if stray:
            warnings.warn(f"killed {len(stray)} process(es) left by the test cluster's jobs: {stray}", stacklevel=2)


def kill_job_processes(cluster_name: str) -> list[str]:
    """SIGKILL every process started by a job of ``cluster_name``; returns their command lines.

    With proctrack/linuxproc (no cgroups in this container) a job step whose
    parent is killed by scancel is re-parented to init and escapes Slurm's
    tracking. Job processes carry SLURM_CLUSTER_NAME in their environment,
    which is how they are found here.
    """
    marker = f"SLURM_CLUSTER_NAME={cluster_name}".encode()
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            os.kill(int(proc.name), signal.SIGKILL)
            killed.append(command.strip()[:200])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return killed


@pytest.fixture(scope="module")
def test_profile(tmp_path_factory) -> Path:
    """profiles/slurm with the overlay for the test cluster merged in."""
    user_profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    overlay = yaml.safe_load((SLURM_TESTS / "profile-overlay.yaml").read_text())
    profile_dir = tmp_path_factory.mktemp("profile-slurm-test")
    (profile_dir / "config.yaml").write_text(
        yaml.safe_dump(deep_merge(user_profile, overlay), sort_keys=False))
    return profile_dir


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(FAULT_BIN), str(VENV_BIN), env.get("PATH", "")])
    env["RBDA_REAL"] = str(VENV_BIN / "rbda")
    for name in ("RBDA_FAULT_MATCH", "RBDA_FAULT_MODE", "RBDA_FAULT_MARKER"):
        env.pop(name, None)
    return env


CONFIG_ARGS = ["--configfile", *map(str, CONFIG_FILES)]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The test's study run locally (profiles/local): the reference for the Slurm runs' outputs."""
    scratch = tmp_path_factory.mktemp("local-run")
    workdir = copy_workflow(scratch / "workflow")
    result = run_snakemake_locally(workdir, "--profile", "profiles/local", *CONFIG_ARGS,
                                   path_first=[scontrol_that_fails_at_once(scratch / "no-slurm-bin")])
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir


@dataclass
class SlurmScenario:
    workdir: Path
    cancel_run: subprocess.CompletedProcess
    cancelled_job_id: str
    cancel_run_jobs: list[SlurmJob]
    missing_after_cancel: set[str]
    rerun_plan: Counter
    retry_run: subprocess.CompletedProcess
    retry_run_jobs: list[SlurmJob]
    final_dry_run: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def slurm_scenario(slurm_cluster, test_profile, local_run, tmp_path_factory) -> SlurmScenario:
    scratch = tmp_path_factory.mktemp("slurm-run")
    workdir = copy_workflow(scratch / "workflow")
    profile_args = ["--profile", str(test_profile), *CONFIG_ARGS]

    # Run 1: no retries; one MME job is held and cancelled with scancel mid-run.
    hold_marker = scratch / "held-job"
    env = base_env() | {"RBDA_FAULT_MATCH": FAULT_TARGET, "RBDA_FAULT_MODE": "hold",
                        "RBDA_FAULT_MARKER": str(hold_marker)}
    first_run = SnakemakeProcess(workdir, [*profile_args, "--retries", "0"], env,
                                 "snakemake-slurm-1.log")
    deadline = time.monotonic() + CANCEL_WAIT_S
    while not hold_marker.exists():
        if not first_run.running() or time.monotonic() > deadline:
            first_run.stop()
            pytest.fail("the held job never started; Snakemake output:\n"
                        + tail(first_run.log_path.read_text()))
        time.sleep(1)
    cancelled_job_id = hold_marker.read_text().strip()
    subprocess.run(["scancel", cancelled_job_id], check=True)
    cancel_run = first_run.finish()
    cancel_run_jobs = slurm_jobs_named(slurm_run_id(cancel_run.stdout))

    missing = {
        path for path in files_under(local_run, "results/runs", "results/lambda-choices")
        if not (workdir / path).is_file()
    }

    # The re-run's plan, before running it.
    dry_run = run_snakemake(workdir, [*profile_args, "--dry-run"], base_env(),
                            "snakemake-dry-run.log")
    assert dry_run.returncode == 0, tail(dry_run.stdout)

    # Run 2: the profile's retries; the held job's first attempt now fails.
    fail_marker = scratch / "failed-job"
    env = base_env() | {"RBDA_FAULT_MATCH": FAULT_TARGET, "RBDA_FAULT_MODE": "fail",
                        "RBDA_FAULT_MARKER": str(fail_marker)}
    retry_run = run_snakemake(workdir, profile_args, env, "snakemake-slurm-2.log")
    retry_run_jobs = slurm_jobs_named(slurm_run_id(retry_run.stdout))

    final_dry_run = run_snakemake(workdir, [*profile_args, "--dry-run"], base_env(),
                                  "snakemake-final-dry-run.log")
    write_job_table(scratch / "slurm-jobs.tsv", cancel_run_jobs + retry_run_jobs)
    return SlurmScenario(
        workdir=workdir, cancel_run=cancel_run, cancelled_job_id=cancelled_job_id,
        cancel_run_jobs=cancel_run_jobs, missing_after_cancel=missing,
        rerun_plan=job_stats(dry_run.stdout), retry_run=retry_run,
        retry_run_jobs=retry_run_jobs, final_dry_run=final_dry_run,
    )


# ------------------------------------------------------------------ tests


def test_cancelled_job_fails_the_run_and_is_named(slurm_scenario):
    run = slurm_scenario.cancel_run
    job_id = slurm_scenario.cancelled_job_id
    assert run.returncode != 0, "a run with a cancelled job must not report success"
    cancelled = [job for job in slurm_scenario.cancel_run_jobs if job.job_id == job_id]
    assert len(cancelled) == 1
    assert cancelled[0].fields["JobState"] == "CANCELLED"
    assert ("train_mme", FAULT_TARGET_WILDCARDS) in cancelled[0].targets
    # Snakemake names the failed bundle, its Slurm job (log) and the jobs in it,
    # and shows the Slurm log, where slurmstepd reports the cancellation.
    (report,) = group_errors(run.stdout)
    assert report.strip().startswith("message: Error in group lambda_runs"), report
    assert f"/group_lambda_runs_train_mme/{job_id}.log" in report, report
    assert names_output(report, FAULT_TARGET), report
    assert re.search(rf"\*\*\* JOB {job_id} ON \S+ CANCELLED AT ", run.stdout), tail(run.stdout)
    # keep-going: everything not downstream of the cancelled bundle finished.
    assert slurm_scenario.missing_after_cancel, "the cancelled job's output exists"
    assert FAULT_TARGET in slurm_scenario.missing_after_cancel


def test_rerun_plans_only_the_missing_jobs(slurm_scenario, local_run):
    missing = slurm_scenario.missing_after_cancel
    expected = Counter(rule_of_output(path) for path in missing)
    # save_models (default: the selected MME runs): each missing selected run's model is copied
    # again by the local rule select_model
    expected["select_model"] = expected["select_lambda"]
    expected.update(["aggregation_inputs", "aggregate", "all"])
    assert slurm_scenario.rerun_plan == expected
    # and the re-run ran that plan, no more
    assert job_stats(slurm_scenario.retry_run.stdout) == expected


def test_failed_first_attempt_is_retried_with_more_time(slurm_scenario):
    run = slurm_scenario.retry_run
    assert run.returncode == 0, tail(run.stdout)
    bundle_attempts = [job for job in slurm_scenario.retry_run_jobs
                       if ("train_mme", FAULT_TARGET_WILDCARDS) in job.targets]
    assert [job.attempt for job in bundle_attempts] == [1, 2]
    first, second = bundle_attempts
    assert first.fields["JobState"] == "FAILED"
    assert second.fields["JobState"] == "COMPLETED"
    assert first.targets == second.targets
    (report,) = group_errors(run.stdout)
    assert f"/group_lambda_runs_train_mme/{first.job_id}.log" in report, report
    assert names_output(report, FAULT_TARGET), report
    assert "injected fault: first run of" in run.stdout  # the wrapper's message, in the Slurm log
    assert "Trying to restart job" in run.stdout
    assert minutes(second.fields["TimeLimit"]) == 2 * minutes(first.fields["TimeLimit"])
    assert "Nothing to be done" in slurm_scenario.final_dry_run.stdout


def test_outputs_equal_the_local_run(slurm_scenario, local_run):
    slurm_files = files_under(slurm_scenario.workdir, "results", "logs")
    local_files = files_under(local_run, "results", "logs")
    assert slurm_files == local_files
    assert "results/report.html" in slurm_files
    run_files = sorted(files_under(local_run, "results/runs"))
    assert run_files
    for path in run_files:
        assert run_identity(slurm_scenario.workdir / path) == run_identity(local_run / path), path


def test_the_study_runs_every_rule_of_the_demo(slurm_scenario, local_run):
    """The small study is the demo's workflow: the Slurm run planned every rule the demo plans."""
    demo_plan = run_snakemake_locally(local_run, "--dry-run", "--configfile", "config.yaml", "presets/demo.yaml",
                                      "--forceall", path_first=[local_run.parent / "no-slurm-bin"])
    assert demo_plan.returncode == 0, demo_plan.stderr[-3000:]
    assert set(job_stats(slurm_scenario.cancel_run.stdout)) == set(job_stats(demo_plan.stdout + demo_plan.stderr))


def merged_config() -> dict:
    config: dict = {}
    for path in CONFIG_FILES:
        config = deep_merge(config, yaml.safe_load((REPO / path).read_text()))
    return config


def test_sbatch_requests_follow_the_profile(slurm_scenario):
    """Partitions, GPUs, CPUs and time limits, read back from the real Slurm jobs."""
    runtime = {
        f"train_{method}": merged_config()["resources"][method]["runtime"]
        for method in ("baseline", "finetune", "mme")
    }
    user_profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    runtime["select_lambda"] = user_profile["set-resources"]["select_lambda"]["runtime"]
    jobs = slurm_scenario.cancel_run_jobs + slurm_scenario.retry_run_jobs
    largest_training_bundle = 0
    for job in jobs:
        rules = job.rules
        assert len(rules) == 1, f"Slurm job {job.job_id} mixes rules {rules}"
        (rule,) = rules
        fields = job.fields
        if rule in TRAINING_RULES:
            largest_training_bundle = max(largest_training_bundle, len(job.targets))
            assert fields["Partition"] == "rbda-gpu", (job.job_id, rule)
            # One GPU per Slurm job, however many training jobs it bundles.
            assert fields.get("TresPerJob") == "gres:gpu:1", (job.job_id, fields.get("TresPerJob"))
            if fields["JobState"] == "COMPLETED":  # what Slurm allocated, not only the request
                assert fields.get("JOB_GRES") == "gpu:1", (job.job_id, fields.get("JOB_GRES"))
        else:
            assert fields["Partition"] == "rbda-cpu", (job.job_id, rule)
            assert "gpu" not in fields.get("TresPerJob", ""), (job.job_id, fields.get("TresPerJob"))
            assert fields.get("JOB_GRES", "(null)") == "(null)", (job.job_id, fields.get("JOB_GRES"))
        if rule in runtime:
            # A bundle's members run one after another: its time limit is the sum.
            # Training runtimes grow with the attempt (config.yaml), the selection's not.
            attempt_factor = job.attempt if rule in TRAINING_RULES else 1
            expected = runtime[rule] * attempt_factor * len(job.targets)
            assert minutes(fields["TimeLimit"]) == expected, (job.job_id, fields["TimeLimit"])
        # Every rule uses one thread; bundles do not add up CPUs either.
        assert fields["NumCPUs"] == "1", (job.job_id, fields["NumCPUs"])
        assert fields["Account"] == "(null)", (job.job_id, fields["Account"])
    assert largest_training_bundle > 1, "no training bundle with more than one job was checked"


# ------------------------------------------------------------------ job arrays (issue 17)
#
# The same cluster, the user profile with profiles/slurm-arrays over it (every
# training run one array task), on the MME runs of the study's pair,
# one split, one shot count: one per lambda, two tasks of one array, side by
# side on the two GPUs. Everything else (data, splits, the source's baseline)
# is copied from the local run, so only those runs are planned.
#
# The first task is held back (fault wrapper) until the second one's run has
# finished. With the locked plugins (slurm 2.8.0, slurm-jobstep 0.6.1) every
# task of an array starts Snakemake with the FIRST task's job and runs its own
# run inside it, so the second task is failed for the first one's missing
# outputs, though its own run succeeded: the defect that keeps bundles the
# default (docs/slurm.md, "Job arrays instead of bundles"). The test pins it, so that
# a plugin upgrade that fixes it shows. (When the first task is not held but
# only slower, a sibling can also see its outputs half written and delete them:
# measured by hand, docs/slurm.md; not pinned here, as it depends on timing.)

ARRAY_WORKFLOW_PROFILE = Path("profiles/slurm-arrays")  # in the workflow copy
ARRAY_PAIR = "hits-to-des"
ARRAY_SPLIT = "0"
ARRAY_SHOTS = ("5",)
ARRAY_TIMEOUT_S = 900
# Seconds the held first task waits after the second task's run JSON appears: more
# than that task's Snakemake needs to finish and check its outputs (the overlay's
# latency-wait is 5 s), even on a loaded machine.
ARRAY_FIRST_TASK_DELAY_S = 30
RUN_PATH = re.compile(
    r"results/runs/(?P<method>\w+)/(?P<source>\w+)-to-(?P<target>\w+)/shots-(?P<shots>\d+)/"
    r"(?:lambda-(?P<lam>[^/]+)/)?split-(?P<split>\d+)\.json"
)


def run_job_of(path: str) -> tuple[str, dict[str, str]]:
    """(rule, wildcards) of the training job that writes the run JSON ``path``."""
    match = RUN_PATH.fullmatch(path)
    assert match, path
    fields = match.groupdict()
    rule = f"train_{fields.pop('method')}"
    return rule, {key: value for key, value in fields.items() if value is not None}


def run_path_of(rule: str, wildcards: dict[str, str]) -> str:
    """The run JSON that training job (rule, wildcards) writes (inverse of run_job_of)."""
    w = wildcards
    lam = f"lambda-{w['lam']}/" if "lam" in w else ""
    return (f"results/runs/{rule.removeprefix('train_')}/{w['source']}-to-{w['target']}/"
            f"shots-{w['shots']}/{lam}split-{w['split']}.json")


def job_key(rule: str, wildcards: dict[str, str]) -> tuple:
    return rule, tuple(sorted(wildcards.items()))


@dataclass
class ArrayScenario:
    targets: list[str]  # the run JSONs trained
    run: subprocess.CompletedProcess
    jobs: list[SlurmJob]
    workdir: Path

    def slurm_log(self, job: SlurmJob) -> str:
        (rule,) = job.rules
        name = f"{job.fields['ArrayJobId']}_{job.fields['ArrayTaskId']}.log"
        return (self.workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}" / name).read_text()


@pytest.fixture(scope="module")
def array_scenario(slurm_cluster, test_profile, local_run, tmp_path_factory) -> ArrayScenario:
    scratch = tmp_path_factory.mktemp("slurm-arrays")
    workdir = copy_workflow(scratch / "workflow")
    shutil.copytree(local_run / "results", workdir / "results")  # copy2: times kept
    targets = sorted(
        path for path in files_under(local_run, f"results/runs/mme/{ARRAY_PAIR}")
        if path.endswith(f"/split-{ARRAY_SPLIT}.json")
        and run_job_of(path)[1]["shots"] in ARRAY_SHOTS
    )
    for path in targets:
        (workdir / path).unlink()
    env = base_env() | {
        "RBDA_FAULT_MATCH": "train --method mme ", "RBDA_FAULT_MODE": "late-first-array-task",
        "RBDA_FAULT_MARKER": str(scratch / "late-first-task"),
        "RBDA_FAULT_WAIT_FOR": " ".join(targets),
        "RBDA_FAULT_DELAY_S": str(ARRAY_FIRST_TASK_DELAY_S),
    }
    # A run the plugin stalls (its issue #473) is stopped well before the bundle runs' limit.
    run = SnakemakeProcess(
        workdir,
        [*targets, "--profile", str(test_profile),
         "--workflow-profile", str(ARRAY_WORKFLOW_PROFILE), *CONFIG_ARGS],
        env, "snakemake-slurm-arrays.log",
    ).finish(timeout=ARRAY_TIMEOUT_S)
    jobs = slurm_jobs_named(slurm_run_id(run.stdout))
    write_job_table(scratch / "slurm-jobs.tsv", jobs)
    return ArrayScenario(targets, run, jobs, workdir)


def test_array_runs_finish_and_equal_the_local_run(array_scenario, local_run):
    run = array_scenario.run
    assert run.returncode == 0, tail(run.stdout)
    rules = Counter(run_job_of(path)[0] for path in array_scenario.targets)
    assert rules == {"train_mme": len(ARRAY_SHOTS) * len(merged_config()["lambdas"])}
    assert job_stats(run.stdout) == rules  # only the runs under test were planned
    for path in array_scenario.targets:
        assert run_identity(array_scenario.workdir / path) == run_identity(local_run / path), path


def test_each_training_rule_is_one_array_of_one_task_per_run(array_scenario):
    """One sbatch call for the rule's ready runs; each task runs its own run, with its own
    time limit and GPU."""
    runtime = {"train_mme": merged_config()["resources"]["mme"]["runtime"]}
    wanted = Counter(run_job_of(path)[0] for path in array_scenario.targets)
    first_attempts = [job for job in array_scenario.jobs if job.attempt == 1]
    assert {rule for job in first_attempts for rule in job.rules} == set(wanted)
    for rule, runs in wanted.items():
        tasks = [job for job in first_attempts if job.rules == {rule}]
        arrays = {job.fields.get("ArrayJobId") for job in tasks}
        assert len(arrays) == 1 and None not in arrays, (
            f"{rule}: {runs} runs ready at once, but not one array: {[j.job_id for j in tasks]}")
        assert sorted(int(job.fields["ArrayTaskId"]) for job in tasks) == list(range(1, runs + 1))
        assert all(len(job.targets) == 1 for job in tasks)
        assert len({job_key(*job.targets[0]) for job in tasks}) == runs, "tasks ran the same run"
    for job in array_scenario.jobs:
        (rule,) = job.rules
        assert job.fields["Partition"] == "rbda-gpu", (job.job_id, rule)
        assert job.fields.get("TresPerJob") == "gres:gpu:1", (job.job_id, job.fields.get("TresPerJob"))
        # One run's time limit (attempt x runtime), not a bundle's sum.
        assert minutes(job.fields["TimeLimit"]) == runtime[rule] * job.attempt, (
            job.job_id, job.fields["TimeLimit"])
        assert job.fields["NumCPUs"] == "1", (job.job_id, job.fields["NumCPUs"])



def test_array_task_finishing_before_the_first_fails_and_is_retried_alone(array_scenario):
    """The plugins' array defect, pinned; and what a failed array task costs: its own retry."""
    first_attempts = sorted((job for job in array_scenario.jobs if job.attempt == 1),
                            key=lambda job: int(job.fields["ArrayTaskId"]))
    first, second = first_attempts
    assert first.fields["JobState"] == "COMPLETED", first.job_id
    assert second.fields["JobState"] == "FAILED", (
        f"array task {second.job_id} finished before the first and did not fail: if the Slurm "
        "plugins now check each task's own outputs, re-measure arrays against bundles (docs/slurm.md)")
    log = array_scenario.slurm_log(second)
    # Its own run finished; then the job step waited for the FIRST task's outputs.
    assert names_output(log, run_path_of(*second.targets[0])), log[-3000:]
    assert "1 of 1 steps (100%) done" in log, log[-3000:]
    _, _, after = log.partition("Waiting at most 5 seconds for missing files:")
    assert run_path_of(*first.targets[0]) in after.partition("MissingOutputException")[0], log[-3000:]
    # What it costs: that run alone is submitted again (not an array, not its
    # sibling), with twice the time; the sibling ran once.
    retries = [job for job in array_scenario.jobs if job.attempt == 2]
    assert [job.targets for job in retries] == [second.targets]
    (retry,) = retries
    assert "ArrayJobId" not in retry.fields, retry.job_id
    assert retry.fields["JobState"] == "COMPLETED", retry.job_id
    assert len(array_scenario.jobs) == 3
