#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, then every test: unit
# tests, the demo workflow run (once, shared) and its incremental re-runs,
# lint (ruff, snakefmt --check, snakemake --lint), the dry-run job counts of
# the published study, the real-Slurm test (a one-pair, one-split study through
# sbatch, bundles and arrays) and the report in headless Chromium. Exits
# non-zero on any failure (including "no tests collected"). Its wall time is
# recorded in docs/benchmarks.md ("Test suite").
#
# With CI=true (and root), the system packages the tests need are installed
# first: chromium (report test) and slurm-wlm + munge (Slurm test; the test's
# own tests/slurm/cluster.sh installs them when missing, so this only does it
# up front in one apt transaction). Outside CI a missing one is a skip.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k download`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
VENV="${VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"

if [[ "${CI:-}" == "true" && "$(id -u)" == 0 ]]; then
    missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v slurmctld >/dev/null || missing+=(slurm-wlm munge)
    if (( ${#missing[@]} )); then
        echo "test: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

cd "$ROOT"
# Two test processes (pytest-xdist), each running whole modules (a module's fixtures are made once):
# the demo run and the Slurm cluster, which tests/conftest.py starts first, run side by side with
# the rest. RBDA_TEST_PROCESSES=0 runs everything in this one process.
status=0
python -m pytest -n "${RBDA_TEST_PROCESSES:-2}" --dist loadscope --no-loadscope-reorder "$@" || status=$?
if (( status == 5 )); then
    echo "test: pytest collected no tests: a failure" >&2
elif (( status != 0 )); then
    echo "test: pytest failed (exit $status)" >&2
else
    echo "test: all tests passed"
fi
exit "$status"
