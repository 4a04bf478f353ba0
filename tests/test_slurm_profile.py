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


def test_full_study_slurm_job_count_is_the_readme_count(repo_root, tmp_path):
    dry_run = subprocess.run(
        [str(VENV_BIN / "snakemake"), "--dry-run", "--nolock", "--profile", "profiles/slurm",
         "--directory", str(tmp_path), "--snakefile", str(repo_root / "Snakefile"),
         "--configfile", str(repo_root / "config.yaml")],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )
    assert dry_run.returncode == 0, dry_run.stdout[-3000:] + dry_run.stderr[-3000:]
    output = dry_run.stdout + dry_run.stderr

    group_jobs = Counter(re.findall(r"Group job (\w+) \(jobs in lexicogr\. order\):", output))
    single_jobs = Counter(re.findall(r"^rule (\w+):$", output, flags=re.MULTILINE))
    grouped_rules = yaml.safe_load((repo_root / "profiles/slurm/config.yaml").read_text())["groups"]

    # Every bundled rule is bundled: none of its jobs is submitted on its own.
    assert not set(single_jobs) & set(grouped_rules), single_jobs
    assert set(group_jobs) == set(grouped_rules.values())

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



def test_every_training_rule_asks_for_a_gpu_on_the_gpu_partition(repo_root):
    """Each method's training rule (rbda.registry.METHODS: `train_{method}`, a lambda method's grid
    job too, and its `train_{method}_rerun` grid rule, rbda.lambda_jobs) is a GPU job in the user
    profile; a method module added without its profile entries fails here."""
    from rbda.registry import LAMBDA_METHODS, METHODS

    profile = yaml.safe_load((repo_root / "profiles/slurm/config.yaml").read_text())
    cpu_partition = profile["default-resources"]["slurm_partition"]
    rules = [f"train_{m}" for m in METHODS] + [f"train_{m}_rerun" for m in LAMBDA_METHODS]
    for rule in rules:
        resources = profile["set-resources"].get(rule)
        method = rule
        assert resources, f"profiles/slurm: no set-resources entry for {rule}"
        assert resources.get("gpu") == 1, (method, resources)
        assert resources.get("slurm_partition") not in (None, cpu_partition), (method, resources)


def profile_settings(repo_root: Path, *names: str):
    """The settings Snakemake takes from profiles/NAME... (later ones over earlier ones), parsed
    by Snakemake's own argument parser."""
    from snakemake.cli import get_argument_parser

    profiles = [str(repo_root / "profiles" / name) for name in names]
    return get_argument_parser(profiles=profiles).parse_args([])


def test_array_profile_turns_every_training_rule_into_array_tasks(repo_root):
    """profiles/slurm-arrays over profiles/slurm, parsed as Snakemake parses them: every
    method's training rule is an array rule and in no group (group jobs cannot be array
    tasks), the site settings (set-resources) are profiles/slurm's, and neither `jobs`
    nor the job rate can hand the plugin part of a rule's ready jobs (plugin issue #473)."""
    from rbda.registry import METHODS

    training_rules = {f"train_{method}" for method in METHODS}
    slurm = profile_settings(repo_root, "slurm")
    arrays = profile_settings(repo_root, "slurm", "slurm-arrays")
    assert set(arrays.slurm_array_jobs.split(",")) == training_rules
    assert not training_rules & set(arrays.groups), arrays.groups
    assert set(arrays.groups) == set(slurm.groups) - training_rules
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
