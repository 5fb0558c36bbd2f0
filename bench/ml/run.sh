#!/usr/bin/env bash
# The ML core benchmark (`make bench-ml`): vigil (Rust) against its Python peers (XGBoost,
# RandomForest, MLP and their average) on two data sets, each side once on one core and once
# on all cores, in one run so every number has its baseline measured beside it.
#
#   bash bench/ml/run.sh [KDDTrain+.txt]
#
# Data sets:
#   nsl-kdd  KDDTrain+ (VIGIL_DATA_DIR or ../shared/data/nsl-kdd), 70 / 15 / 15 stratified
#            split (seed 42), reported on the 15 % test part.
#   flows    bench/ml/synth_flows.py (seed 20261204): train.csv (100,000 rows) to train on,
#            test.csv (40,000 rows, an independent stream) to report on.
# Rust: `cargo bench -p vigil-ml --bench ml` on NSL-KDD; on flows the release `vigil train`
# (timed), `vigil evaluate --json`, and the bench binary's `--model --csv` for latency.
# Python: bench/ml/compare.py. One core: `taskset -c 0` and every thread knob at 1
# (RAYON_NUM_THREADS, OMP/MKL/OpenBLAS, n_jobs, nthread). All cores: each side's defaults.
#
# Environment: BENCH_THREADS ("1 all"), BENCH_REPEATS (Python fits per learner, 3),
# BENCH_OUT (results folder, default bench/.results/<UTC time>).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/bench/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet scikit-learn xgboost numpy pandas
fi
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set on some machines for old OpenBLAS builds and
# slow a current numpy down; unset them for the Python side.
python=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python")
target="${CARGO_TARGET_DIR:-$root/target}"
out="${BENCH_OUT:-$root/bench/.results/$(date -u +%Y%m%dT%H%M%SZ)}"
flows="$root/bench/.data/flows"
kdd=("$@")
mkdir -p "$out"
started=$(date +%s)

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git -C "$root" log -1 --format='%h %s' 2>/dev/null | cut -c1-100)"
    echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/machine.txt"

echo "== data: synthetic flows"
"${python[@]}" "$root/bench/ml/synth_flows.py" "$flows" 2>&1 | tee "$out/flows.txt"

echo "== build (release)"
(cd "$root" && cargo build --release -p vigil-cli)
vigil="$target/release/vigil"
# The bench binary is run directly, so no cargo (and no wait for its build lock) sits inside
# the timed runs.
bench=$(cd "$root" && cargo bench -p vigil-ml --bench ml --no-run --message-format=json |
    "${python[@]}" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ml" and m.get("executable"):
        print(m["executable"])')

seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'; }

for mode in ${BENCH_THREADS:-1 all}; do
    if [ "$mode" = 1 ]; then
        pin=(taskset -c 0 env RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
             OPENBLAS_NUM_THREADS=1)
    else
        pin=(env)
    fi
    echo "== threads: $mode (load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "$mode $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/load.txt"

    echo "-- vigil, nsl-kdd"
    "${pin[@]}" "$bench" "${kdd[@]}" --json > "$out/rust-nsl-kdd-$mode.json"
    # Two vigil configurations: the defaults, and the one for data whose test file comes from
    # the training file's process (docs/benchmarks.md): the threshold with the best accuracy on
    # validation, and no novelty member (its own held-out part of train.csv preferred it).
    for variant in default accuracy-no-novelty; do
        echo "-- vigil, flows, $variant"
        extra=()
        if [ "$variant" != default ]; then
            extra=(--operating-point accuracy --config "$root/bench/ml/train-no-novelty.json")
        fi
        name="flows-$variant-$mode"
        t=$(date +%s.%N)
        "${pin[@]}" "$vigil" train --data "$flows/train.csv" --format csv --label-column Label \
            "${extra[@]}" --out "$out/$name.vgl" > "$out/rust-$name-train.txt" \
            2> "$out/rust-$name-train.err"
        seconds_since "$t" > "$out/rust-$name-train.seconds"
        "${pin[@]}" "$vigil" evaluate --model "$out/$name.vgl" --data "$flows/test.csv" \
            --format csv --label-column Label --json > "$out/rust-$name-evaluate.json" 2>/dev/null
        "${pin[@]}" "$bench" --model "$out/$name.vgl" --csv "$flows/test.csv" \
            --label-column Label --json > "$out/rust-$name-score.json"
    done
    echo "-- python, nsl-kdd"
    "${pin[@]}" "${python[@]}" "$root/bench/ml/compare.py" "${kdd[@]}" --threads "$mode" --json \
        > "$out/python-nsl-kdd-$mode.json"
    echo "-- python, flows"
    "${pin[@]}" "${python[@]}" "$root/bench/ml/compare.py" --train "$flows/train.csv" \
        --test "$flows/test.csv" --label-column Label --name flows --threads "$mode" --json \
        > "$out/python-flows-$mode.json"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
echo "wall: $(( $(date +%s) - started )) s" | tee -a "$out/machine.txt"
"${python[@]}" "$root/bench/ml/report.py" "$out" | tee "$out/report.md"
