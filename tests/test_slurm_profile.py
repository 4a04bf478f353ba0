"""profiles/slurm without a cluster: the Slurm jobs its bundling makes of the full study.

docs/slurm.md states how many Slurm jobs the published study submits with the
profile's default bundling; this test recomputes that number from a dry-run
of the study with the profile, so the page cannot drift from the profile or
the workflow. (Running jobs through a real Slurm is tests/test_slurm.py.)
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

VENV_BIN = Path(sys.executable).parent


def local_rules(repo_root: Path) -> set[str]:
    """Rules named in the workflow's `localrules:` blocks: run by Snakemake itself, never submitted."""
    names: set[str] = set()
    for smk in [repo_root / "Snakefile", *sorted((repo_root / "rules").glob("*.smk"))]:
        for block in re.findall(r"^localrules:\s*\n((?:[ \t]+\w+,?[ \t]*\n)+)", smk.read_text(), re.MULTILINE):
            names |= set(re.findall(r"\w+", block))
    return names


def slurm_page(repo_root: Path) -> str:
    return (repo_root / "docs" / "slurm.md").read_text()


def slurm_dry_run(repo_root: Path, directory: Path, *configfiles: str, config: tuple[str, ...] = ()) -> str:
    """Snakemake's dry-run output for the study of ``configfiles`` with profiles/slurm."""
    dry_run = subprocess.run(
        [str(VENV_BIN / "snakemake"), "--dry-run", "--nolock", "--profile", "profiles/slurm",
         "--directory", str(directory), "--snakefile", str(repo_root / "Snakefile"),
         "--configfile", *configfiles, *(["--config", *config] if config else [])],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )
    assert dry_run.returncode == 0, dry_run.stdout[-3000:] + dry_run.stderr[-3000:]
    return dry_run.stdout + dry_run.stderr


def planned_jobs(output: str) -> list[tuple[str, dict[str, str], str | None]]:
    """(rule, resources, group) of each job of a dry run: a group's members are the indented
    jobs after its 'Group job G' line; group None for a job submitted alone."""
    jobs, group = [], None
    for line in output.splitlines():
        header = re.search(r"Group job (\w+) \(", line)
        job = re.match(r"^( *)rule (\w+):$", line)
        resources = re.match(r"^ *resources: (.*)$", line)
        if header:
            group = header.group(1)
        elif job:
            jobs.append((job.group(2), {}, group if job.group(1) else None))
        elif resources and jobs:
            jobs[-1][1].update(item.split("=", 1) for item in resources.group(1).split(", "))
    return jobs


def test_full_study_slurm_job_count_is_the_readme_count(repo_root, tmp_path):
    from rbda.registry import LAMBDA_METHODS

    output = slurm_dry_run(repo_root, tmp_path, str(repo_root / "config.yaml"))
    group_jobs = Counter(re.findall(r"Group job (\w+) \(jobs in lexicogr\. order\):", output))
    single_jobs = Counter(re.findall(r"^rule (\w+):$", output, flags=re.MULTILINE))
    profile = yaml.safe_load((repo_root / "profiles/slurm/config.yaml").read_text())
    study = yaml.safe_load((repo_root / "config.yaml").read_text())

    # The published study's bundles: its fine-tunes (methods without lambda: the profile's
    # adaptation_runs, rules/paths.smk) and its lambda selections; none of their jobs is
    # submitted on its own. Its MME runs are grid jobs (lambda_jobs: grid), one Slurm job each.
    groups = profile["groups"]
    assert set(group_jobs) == {groups["adaptation_runs"], groups["select_lambda"]}, group_jobs
    bundled_rules = {"select_lambda"} | {f"train_{m}" for m in study["methods"] if m not in LAMBDA_METHODS}
    assert not set(single_jobs) & bundled_rules, single_jobs

    # `all` runs nothing; local rules run inside the Snakemake process.
    no_slurm_job = {"all"} | local_rules(repo_root)
    assert {"aggregation_inputs", "download_survey", "register_local_survey"} <= no_slurm_job
    slurm_jobs = sum(group_jobs.values()) + sum(
        count for rule, count in single_jobs.items() if rule not in no_slurm_job)
    total_row = re.search(r"^\| \*\*total\*\* \|.*\| \*\*([\d,]+)\*\* \|$",
                          slurm_page(repo_root), flags=re.MULTILINE)
    assert total_row, "no '| **total** | ... | **N** |' row in docs/slurm.md"
    assert total_row.group(1) == f"{slurm_jobs:,}", (
        f"the full study submits {slurm_jobs:,} Slurm jobs "
        f"(bundles {dict(group_jobs)}, single jobs {dict(single_jobs)}); update docs/slurm.md")


@pytest.mark.parametrize("lambda_jobs", ["grid", "per_lambda"])
def test_every_training_job_of_every_method_asks_for_a_gpu_on_the_gpu_partition(repo_root, tmp_path, lambda_jobs):
    """Every registered method (rbda.registry, none named here) planned on the demo with
    profiles/slurm: each training job (train_baseline, train_METHOD, a lambda method's grid
    job) gets the profile's `set-resources: {training: ...}` (GPU partition, one GPU) without a
    line of its own in the profile, every other submitted job the CPU partition; single runs
    are bundled by class (adaptation_runs, lambda_runs), grid jobs never."""
    from rbda.registry import ADAPTATION_METHODS, LAMBDA_METHODS

    profile = yaml.safe_load((repo_root / "profiles/slurm/config.yaml").read_text())
    training = profile["set-resources"]["training"]
    assert not set(profile["set-resources"]) & {f"train_{m}" for m in ADAPTATION_METHODS}
    cpu_partition = profile["default-resources"]["slurm_partition"]
    methods = "[" + ",".join(ADAPTATION_METHODS) + "]"
    output = slurm_dry_run(repo_root, tmp_path, str(repo_root / "config.yaml"), str(repo_root / "presets/demo.yaml"),
                           config=(f"methods={methods}", f"lambda_jobs={lambda_jobs}"))
    no_slurm_job = {"all"} | local_rules(repo_root)
    groups = profile["groups"]
    seen = set()
    for rule, resources, group in planned_jobs(output):
        if rule in no_slurm_job:
            continue
        if rule.startswith("train_"):
            seen.add(rule)
            assert resources.get("slurm_partition") == training["slurm_partition"], (rule, resources)
            assert resources.get("gpu") == str(training["gpu"]), (rule, resources)
            method = rule.removeprefix("train_")
            if method in LAMBDA_METHODS and lambda_jobs == "grid":
                assert group is None, (rule, group)
            elif method in LAMBDA_METHODS:
                assert group == groups["lambda_runs"], (rule, group)
            elif method != "baseline":
                assert group == groups["adaptation_runs"], (rule, group)
        else:
            assert resources.get("slurm_partition") == cpu_partition, (rule, resources)
            assert resources.get("gpu", "0") == "0", (rule, resources)
    assert seen == {"train_baseline"} | {f"train_{m}" for m in ADAPTATION_METHODS}, seen


def profile_settings(repo_root: Path, *names: str):
    """The settings Snakemake takes from profiles/NAME... (later ones over earlier ones), parsed
    by Snakemake's own argument parser."""
    from snakemake.cli import get_argument_parser

    profiles = [str(repo_root / "profiles" / name) for name in names]
    return get_argument_parser(profiles=profiles).parse_args([])


def test_array_profile_turns_every_training_rule_into_array_tasks(repo_root):
    """profiles/slurm-arrays over profiles/slurm, parsed as Snakemake parses them: every
    rule's jobs are array tasks (`all`, so no method is named) and no training rule is in a
    group (group jobs cannot be array tasks), the site settings (set-resources) are
    profiles/slurm's, and neither `jobs` nor the job rate can hand the plugin part of a rule's
    ready jobs (plugin issue #473)."""
    training_classes = {"adaptation_runs", "lambda_runs"}  # rules/paths.smk's keys
    slurm = profile_settings(repo_root, "slurm")
    arrays = profile_settings(repo_root, "slurm", "slurm-arrays")
    assert arrays.slurm_array_jobs == "all"
    assert training_classes <= set(slurm.groups)
    assert not training_classes & set(arrays.groups), arrays.groups
    assert arrays.groups == {rule: group for rule, group in slurm.groups.items() if rule not in training_classes}
    # A key of the workflow profile replaces that key's whole value: the site settings stay
    # profiles/slurm's only while profiles/slurm-arrays leaves them alone.
    overlay = yaml.safe_load((repo_root / "profiles/slurm-arrays/config.yaml").read_text())
    assert not {"set-resources", "default-resources", "resources", "set-resource-scopes"} & set(overlay)
    assert ({rule: sorted(res) for rule, res in arrays.set_resources.items()}
            == {rule: sorted(res) for rule, res in slurm.set_resources.items()})
    assert arrays.executor == "slurm" and arrays.retries == slurm.retries
    # More than the full study's runs (4,800 adaptation runs) and no rate limit below that.
    assert arrays.jobs >= 100_000 and arrays.max_jobs_per_timespan.max_jobs >= 100_000


def test_profiles_rate_limits_are_the_ones_snakemake_applies(repo_root):
    """`max-jobs-per-second` is ignored by Snakemake 9 whenever `max-jobs-per-timespan` has its
    default (100/1s), i.e. always from a profile: the profiles use the option that applies."""
    for profile in sorted((repo_root / "profiles").glob("*/config.yaml")):
        settings = yaml.safe_load(profile.read_text())
        assert "max-jobs-per-second" not in settings, profile
        if "max-jobs-per-timespan" in settings:
            # profiles/slurm-arrays is a workflow profile over profiles/slurm
            stack = ["slurm"] if profile.parent.name == "slurm-arrays" else []
            args = profile_settings(repo_root, *stack, profile.parent.name)
            number, _, span = settings["max-jobs-per-timespan"].partition("/")
            assert args.max_jobs_per_timespan.max_jobs == int(number), profile
            assert span == "1s" and args.max_jobs_per_timespan.timespan == 1, profile
