#!/usr/bin/env bash
# The event benchmark (tests/bench/events.rs) against two commits in one session: the binary of
# BASE and the binary of the working tree, alternately, RUNS times each, on the same machine,
# with the same driver, the same production model and the same settings. Prints every run and
# the medians (results: docs/benchmarks.md).
#
#   bash bench/events/compare.sh BASE [RUNS]      (make bench-events BASE=<rev> RUNS=<n>)
#
# BASE is built in a git worktree under $BENCH_OUT (or BENCH_BASE_BIN names a `vigil` built from
# it before); both builds share CARGO_TARGET_DIR, so only the workspace's own crates are compiled
# twice. BENCH_EVENTS, BENCH_RATE and BENCH_SECONDS pass through to every run.
set -euo pipefail
base="${1:?usage: compare.sh BASE [RUNS]}"
runs="${2:-3}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${BENCH_OUT:-$root/bench/.results/events-$(date -u +%Y%m%dT%H%M%SZ)}"
target="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TARGET_DIR="$target"
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1

base_rev="$(git -C "$root" rev-parse --short "$base")"
head_rev="$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo '+changes')"
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== base $base_rev, head $head_rev, $runs runs each, alternating"
bash "$root/scripts/setup"

# Cargo records a crate's sources relative to the workspace root and rebuilds when one is newer
# than its artifacts; two checkouts sharing a target directory would each take the other's
# artifacts for their own. Every file that differs between the two is touched before a build.
changed="$(cd "$root" && { git diff --name-only "$base"; git ls-files --others --exclude-standard; } | sort -u)"
touch_changed() {
  (cd "$1" && for f in $changed; do if [ -e "$f" ]; then touch "$f"; fi; done)
}

if [ -n "${BENCH_BASE_BIN:-}" ]; then
  echo "== base: $BENCH_BASE_BIN (built before from $base_rev)"
  cp "$BENCH_BASE_BIN" "$out/vigil-base"
else
  echo "== build base ($base_rev)"
  worktree="$out/base-src"
  if [ ! -d "$worktree" ]; then
    git -C "$root" worktree add --detach "$worktree" "$base" >/dev/null
  fi
  git -C "$worktree" checkout -q --detach "$base"
  trap 'git -C "$root" worktree remove --force "$worktree" >/dev/null 2>&1 || true' EXIT
  touch_changed "$worktree"
  (cd "$worktree" && cargo build --release -p vigil-cli)
  cp "$target/release/vigil" "$out/vigil-base"
fi

echo "== build head ($head_rev) and the driver"
touch_changed "$root"
(cd "$root" && cargo build --release -p vigil-cli && cargo bench -p vigil-e2e --bench events --no-run)
cp "$target/release/vigil" "$out/vigil-head"

echo "== the production model (vigil train on KDDTrain+, default configuration, head's trainer)"
data="${VIGIL_DATA_DIR:-$root/../shared/data/nsl-kdd}/KDDTrain+.txt"
"$out/vigil-head" train --data "$data" --out "$out/model.vigil" > "$out/train.txt"
export BENCH_MODEL="$out/model.vigil"

results="$out/results.jsonl"
for i in $(seq 1 "$runs"); do
  for side in base head; do
    echo "== run $i: $side"
    (cd "$root" && BENCH_VIGIL="$out/vigil-$side" BENCH_JSON="$results" \
      cargo bench -q -p vigil-e2e --bench events)
  done
done

python3 - "$results" "$base_rev" "$head_rev" <<'PY'
import json, statistics, sys
path, base_rev, head_rev = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
side = lambda r: "base" if r["vigil"].endswith("vigil-base") else "head"
keys = [("throughput", "sustained events/s", True), ("cpu_ms_per_event", "CPU ms per event", False),
        ("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False), ("max_ms", "max ms", False)]
print()
print("| run | binary | events/s | CPU ms/event | p50 ms | p99 ms | max ms | alerts (repeats) |")
print("|---|---|---|---|---|---|---|---|")
for i, r in enumerate(rows):
    print(f"| {i // 2 + 1} | {side(r)} | {r['throughput']:.0f} | {r['cpu_ms_per_event']:.3f} | "
          f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['alerts']} ({r['alert_repeats']}) |")
print()
print(f"| median of each | base {base_rev} | head {head_rev} | head vs base |")
print("|---|---|---|---|")
for key, name, higher_is_better in keys:
    b = statistics.median(r[key] for r in rows if side(r) == "base")
    h = statistics.median(r[key] for r in rows if side(r) == "head")
    print(f"| {name} | {b:.3f} | {h:.3f} | {(h - b) / b * 100:+.1f} % |")
PY
