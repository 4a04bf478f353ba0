#!/usr/bin/env bash
# The demo study on a fresh machine: set-up, then the whole workflow on four
# small synthetic surveys (every output of the real study, in minutes).
# Extra arguments go to snakemake, e.g. `bash scripts/demo.sh --cores 4`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
VENV="${VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"

cd "$ROOT"
start=$SECONDS
snakemake --profile profiles/local --configfile config.yaml presets/demo.yaml "$@"
echo "demo: finished in $((SECONDS - start)) s; open results/report.html (tables in results/tables/, figures in results/figures/)"
