#!/usr/bin/env bash
# Shared set-up of scripts/demo.sh and scripts/test.sh: a virtual environment
# in .venv (created if absent) with torch installed first, then every other
# dependency at the exact versions and hashes of requirements/lock.txt, then
# this package (editable, no dependencies), then `pip check`.
#
#   TORCH_SPEC    what to install as torch (default: requirements/torch.txt,
#                 torch==2.13.0); GPU users may give e.g.
#                 "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
#   RBDA_UNLOCKED=1  install the dependencies from the ranges in pyproject.toml
#                 (newest allowed versions) instead of the lock
#   PYTHON        interpreter that creates the environment (default python3.11, else python3)
#   VENV          where the environment lives (default .venv in the checkout)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
LOCK="$ROOT/requirements/lock.txt"
TORCH_SPEC="${TORCH_SPEC:-$(grep -E '^torch==' "$ROOT/requirements/torch.txt")}"

if [[ ! -x "$VENV/bin/python" ]]; then
    PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
    [[ -n "$PYTHON" ]] || { echo "setup: no python3.11 or python3 found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "setup: $PYTHON is older than Python 3.11" >&2; exit 1; }
    echo "setup: creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi

pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
echo "setup: installing $TORCH_SPEC"
# shellcheck disable=SC2086  # TORCH_SPEC may carry pip options
pip install -q $TORCH_SPEC
if [[ "${RBDA_UNLOCKED:-}" == 1 ]]; then
    echo "setup: RBDA_UNLOCKED=1: installing rbda (editable) with the workflow and test extras from the pyproject.toml ranges"
    pip install -q -e "$ROOT[workflow,test]"
else
    echo "setup: installing the locked dependencies (requirements/lock.txt, hash-checked)"
    pip install -q --require-hashes --no-deps -r "$LOCK"
    echo "setup: installing rbda (editable, no dependencies)"
    pip install -q --no-deps -e "$ROOT"
fi
pip check
echo "setup: ready ($("$VENV/bin/python" -c 'import torch, rbda; print(f"rbda {rbda.__version__}, torch {torch.__version__}")'))"
