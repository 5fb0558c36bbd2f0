#!/usr/bin/env bash
# Runs the ML core benchmark: vigil-ml (Rust) and the Python trio side by side on KDDTrain+.
# Creates its own venv under bench/.venv on first use.
#   bash bench/ml/run.sh [KDDTrain+.txt]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/bench/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet scikit-learn xgboost numpy pandas
fi
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
echo "== vigil-ml (Rust)"
(cd "$root" && cargo bench -p vigil-ml --bench ml -- "$@")
echo "== Python (scikit-learn RandomForest + xgboost + scikit-learn MLP)"
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set on some machines for old OpenBLAS builds and
# slow a current numpy down; unset them for this command only.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" "$root/bench/ml/compare.py" "$@"
