"""One job per lambda against one job per lambda grid (config lambda_jobs), on the demo.

Runs the demo study (presets/demo.yaml, with ``--preset extended``: also presets/extended.yaml)
once up to the baselines, copies that working folder twice, and in each copy times the
lambda-method stage, one lambda method after another (`--until train_mme`, then `--until
train_ent`, ...: every run of each lambda method the study configures), and with ``--whole``
the rest of the study (fine-tuning and the other methods, selection, tables, figures, report),
one copy with `lambda_jobs: per_lambda`, the other with `grid`; then checks that every run JSON
(less its wall time) and every table are identical. Also prints, from dry runs, the training
jobs and survey loads of the published study and of the extended study (presets/extended.yaml
over config.yaml) with each setting. Prints the machine's load average before and after: the
figures are wall times on a shared machine.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_lambda_jobs.py --cores 2 --whole --preset extended
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "workflow", "presets", "envs", "profiles", "scripts")
DEMO = ("--configfile", "config.yaml", "presets/demo.yaml")


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    # the jobs run `rbda` from this interpreter's environment, activated or not
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", PATH=path)
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed in {workdir}:\n{result.stderr[-4000:]}")
    return result


def timed(workdir: Path, *args: str) -> float:
    started = time.monotonic()
    snakemake(workdir, *args)
    return time.monotonic() - started


def job_counts(workdir: Path, *args: str) -> dict[str, int]:
    output = snakemake(workdir, "--dry-run", *args)
    text = output.stdout + output.stderr
    table = text.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = dict((rule, int(n)) for rule, n in (line.split() for line in table.splitlines()[3:]))
    counts.pop("total")
    return counts


def overlay(workdir: Path, name: str, text: str) -> str:
    path = workdir / "presets" / name
    path.write_text(text)
    return str(path.relative_to(workdir))


def same_results(a: Path, b: Path) -> tuple[int, int, list[str]]:
    """(run JSONs compared, tables compared, differences): runs less their wall time, tables byte for byte."""
    differences, runs, tables = [], 0, 0
    for path in sorted((a / "results" / "runs").rglob("*.json")):
        other = b / path.relative_to(a)
        x, y = json.loads(path.read_text()), json.loads(other.read_text())
        for record in (x, y):
            record.get("training", {}).pop("wall_seconds", None)
        runs += 1
        if x != y:
            differences.append(str(path.relative_to(a)))
    for path in sorted((a / "results" / "tables").rglob("*")) if (a / "results" / "tables").is_dir() else ():
        if path.is_file():
            tables += 1
            if not filecmp.cmp(path, b / path.relative_to(a), shallow=False):
                differences.append(str(path.relative_to(a)))
    return runs, tables, differences


def loads(counts: dict[str, int], lambda_methods: tuple[str, ...] = ("mme", "ent", "mmefm")) -> tuple[int, int]:
    """(training jobs, survey loads) of the adaptation and lambda methods: each such job loads
    two surveys (source and target); a baseline loads every survey (not counted here, unchanged)."""
    jobs = sum(n for rule, n in counts.items() if re.fullmatch(r"train_(?!baseline)\w+", rule))
    return jobs, 2 * jobs


def configured_lambda_methods(workdir: Path, configfiles: tuple[str, ...]) -> list[str]:
    """The lambda methods (rbda.registry) of the study the config files (later over earlier) configure."""
    sys.path.insert(0, str(REPO / "src"))
    import yaml

    from rbda.registry import LAMBDA_METHODS

    methods = None
    for name in configfiles:
        if name != "--configfile":
            methods = (yaml.safe_load((workdir / name).read_text()) or {}).get("methods", methods)
    return [m for m in methods if m in LAMBDA_METHODS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the working folders here")
    parser.add_argument("--pairs", nargs="+", help="only these pairs of the demo (e.g. des-to-hits), to fit a "
                                                   "loaded machine; default: the demo's 12")
    parser.add_argument("--preset", action="append", default=[],
                        help="presets/NAME.yaml over the demo (repeatable), e.g. extended")
    parser.add_argument("--whole", action="store_true",
                        help="also run the rest of the study in each copy and compare its tables")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-lambda-jobs-"))
    base = root / "base"
    base.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, base / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, base / name)
    print(f"machine: {os.cpu_count()} cores; load average before: {os.getloadavg()}")

    print("\n== job counts (dry runs) ==")
    for study, extra in (("published", ()), ("extended", ("--configfile", "config.yaml", "presets/extended.yaml"))):
        for setting in ("per_lambda", "grid"):
            o = overlay(base, f"jobs-{setting}.yaml", f"lambda_jobs: {setting}\n")
            counts = job_counts(base, *(extra or ("--configfile", "config.yaml")), o)
            jobs, survey_loads = loads(counts)
            lam = {r: n for r, n in counts.items() if r in ("train_mme", "train_ent", "train_mmefm")}
            print(f"{study:9s} {setting:10s} total jobs {sum(counts.values()):5d}; adaptation training jobs "
                  f"{jobs:5d} (lambda methods {lam}); adaptation survey loads {survey_loads}")

    demo = DEMO + tuple(f"presets/{name}.yaml" for name in args.preset) + (
        (overlay(base, "pairs.yaml", f"pairs: {json.dumps(args.pairs)}\n"),) if args.pairs else ())
    lambda_methods = configured_lambda_methods(base, demo)
    label = "demo" + "".join(f" + {name}" for name in args.preset)
    print(f"\n== {label}{' pairs ' + ', '.join(args.pairs) if args.pairs else ''}: data, splits and baselines (shared) ==")
    t0 = timed(base, "--cores", str(args.cores), *demo, "--until", "train_baseline")
    print(f"shared stage: {t0:.1f} s; lambda methods: {', '.join(lambda_methods)}")
    stages = {}
    for setting in ("per_lambda", "grid"):
        work = root / setting
        shutil.copytree(base, work, symlinks=True)  # copy2: the mtimes too, so nothing upstream reruns
        o = overlay(work, "setting.yaml", f"lambda_jobs: {setting}\n")
        per_method = {}
        for method in lambda_methods:
            rule = f"train_{method}"
            jobs = job_counts(work, *demo, o, "--until", rule).get(rule, 0)
            per_method[method] = (jobs, timed(work, "--cores", str(args.cores), *demo, o, "--until", rule))
        lam = sum(seconds for _, seconds in per_method.values())
        rest = timed(work, "--cores", str(args.cores), *demo, o) if args.whole else 0.0
        stages[setting] = (lam, rest, per_method)
        print(f"{setting:10s}: lambda-method stage {lam:7.1f} s ("
              + "; ".join(f"{m}: {n} jobs, {t:.1f} s" for m, (n, t) in per_method.items()) + ")"
              + (f"; rest of the study {rest:7.1f} s; whole workflow {t0 + lam + rest:7.1f} s" if args.whole else "")
              + f" (load average now {os.getloadavg()})")
    for method in lambda_methods:
        print(f"speed-up of {method}'s stage: {stages['per_lambda'][2][method][1] / stages['grid'][2][method][1]:.2f}x")
    runs, tables, differences = same_results(root / "per_lambda", root / "grid")
    whole = {setting: t0 + lam + rest for setting, (lam, rest, _) in stages.items()}
    print(f"\nspeed-up of the lambda-method stage: {stages['per_lambda'][0] / stages['grid'][0]:.2f}x"
          + (f"; whole workflow: {whole['per_lambda'] / whole['grid']:.2f}x" if args.whole else ""))
    print(f"identical: {runs} run JSONs (less wall time), {tables} table files; differences: {differences or 'none'}")
    print(f"load average after: {os.getloadavg()}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
