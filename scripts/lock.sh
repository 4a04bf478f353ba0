#!/usr/bin/env bash
# Regenerates requirements/lock.txt: exact versions and sha256 hashes of every
# Python dependency of rbda and its workflow and test extras (pyproject.toml),
# for Python 3.11 on Linux x86_64, resolved on PyPI with uv
# (`python3 -m pip install uv`, or set UV=/path/to/uv).
#
# torch itself and its CUDA runtime (triton, nvidia-*, cuda-*) are left out:
# scripts/setup.sh installs torch first (requirements/torch.txt, or TORCH_SPEC
# for a CUDA build), because the right torch build depends on the machine.
# Its other dependencies (sympy, networkx, jinja2, ...) are resolved against
# the pinned torch and locked like the rest.
#
# The first line records a hash of the lock's inputs (pyproject.toml's
# dependency lists and requirements/torch.txt; python -m rbda.provenance
# --lock-input-sha256); tests/test_lock.py fails when they changed without
# running this script again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV="${UV:-uv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
command -v "$UV" >/dev/null \
    || { echo "lock: uv not found; install it from PyPI (python3 -m pip install uv) or set UV=/path/to/uv" >&2; exit 1; }
[[ -n "$PYTHON" ]] || { echo "lock: no python3.11 or python3 found; set PYTHON" >&2; exit 1; }
cd "$ROOT"

input_sha256="$(PYTHONPATH="$ROOT/src" "$PYTHON" -m rbda.provenance --lock-input-sha256)"

# uv keeps the versions of the output file it is given where the ranges still allow them, so
# adding a dependency does not move the others: each pass compiles into a copy of the current lock.
prefer="$(mktemp)"
trap 'rm -f "$prefer"' EXIT
compile() {
    if [[ -f requirements/lock.txt ]]; then cp requirements/lock.txt "$prefer"; else : > "$prefer"; fi
    # PyPI only, whatever pip.conf or uv.toml on this machine say.
    "$UV" pip compile pyproject.toml --extra workflow --extra test \
        --constraint requirements/torch.txt \
        --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --index-url https://pypi.org/simple --no-config --quiet --output-file "$prefer" "$@"
    cat "$prefer"
}

# Pass 1: which resolved packages are torch and its CUDA runtime.
mapfile -t left_out < <(compile --no-header --no-annotate \
    | sed -n -E 's/^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==.*/\1/p')
no_emit=()
for name in "${left_out[@]}"; do no_emit+=(--no-emit-package "$name"); done

tmp="$(mktemp "$ROOT/requirements/.lock.txt.XXXXXX")"
trap 'rm -f "$tmp" "$prefer"' EXIT
{
    echo "# rbda-lock-input-sha256: $input_sha256"
    echo "# Regenerate with: bash scripts/lock.sh ($("$UV" --version))."
    echo "# Left out (installed by scripts/setup.sh from requirements/torch.txt or TORCH_SPEC):"
    echo "#   ${left_out[*]}"
    compile --generate-hashes "${no_emit[@]}" --custom-compile-command "bash scripts/lock.sh"
} > "$tmp"
mv "$tmp" "$ROOT/requirements/lock.txt"
rm -f "$prefer"
trap - EXIT
echo "lock: wrote requirements/lock.txt ($(grep -c '==' "$ROOT/requirements/lock.txt") packages; left out: ${left_out[*]})"
