#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment of envs/rbda.yaml, from its
# working directory (the checkout): install this package, its dependencies
# being already in the environment.
set -euo pipefail
[[ -f pyproject.toml && -d src/rbda ]] || { echo "post-deploy: run snakemake from the rbda checkout (no src/rbda in $PWD)" >&2; exit 1; }
python -m pip install --no-deps -e .
