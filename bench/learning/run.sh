#!/usr/bin/env bash
# The learning-loop benchmark (`make bench-learning`; results: docs/benchmarks.md).
#
# Through the running system (`vigil up`, release build, real NATS and PostgreSQL):
#  1. a first model is trained by the trainer service on KDDTrain+ without its R2L families
#     (bench/learning/prepare.py) and promoted;
#  2. three arms, each on its own copy of that database (so each starts from the same model):
#     rows of the held-out families mixed with ordinary traffic are replayed with
#     `vigil replay nsl-kdd --with-feedback`, giving every verdict ("all"), a budget of 2 % picked
#     by the review queue ("queue"), or the same budget at random ("random");
#     the feedback service's trigger asks the trainer for a run once the arm's verdicts are in;
#  3. fresh rows (never fed back) are scored with `vigil evaluate --production` before and after.
#
#   bash bench/learning/run.sh [KDDTrain+.txt]
# BENCH_OUT chooses the results folder, BENCH_BUDGET_SHARE the budget (0.02), BENCH_ARMS the arms,
# BENCH_ROUNDS the rounds of replay, verdicts and retraining (1), BENCH_SEED the seed of
# prepare.py's split (20261205) and of the random arm's picks, BENCH_RATE the replay's signals
# per second (0: as fast as NATS takes them); BENCH_KEEP=1 keeps the
# databases and NATS streams it made (by default they are removed at the end; their names start
# with the run's id, printed first).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
data="${1:-${VIGIL_DATA_DIR:-$root/../shared/data/nsl-kdd}/KDDTrain+.txt}"
out="${BENCH_OUT:-$root/bench/.results/learning-$(date -u +%Y%m%dT%H%M%SZ)}"
share="${BENCH_BUDGET_SHARE:-0.02}"
arms="${BENCH_ARMS:-all queue random}"
pg="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
run_id="bl$(date +%s)"
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1

echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
bash "$root/scripts/setup"
(cd "$root" && cargo build --release -p vigil-cli)
target="${CARGO_TARGET_DIR:-$root/target}"
vigil="$target/release/vigil"

echo "== data"
seed="${BENCH_SEED:-20261205}"
python3 "$root/bench/learning/prepare.py" "$data" "$out/data" --seed "$seed"
replay_rows=$(wc -l < "$out/data/replay.txt")
budget=$(python3 -c "import math; print(max(1, math.floor($replay_rows * $share)))")

psql_admin() { psql "$pg/postgres" -v ON_ERROR_STOP=1 -qAt -c "$1"; }
psql_db() { psql "$pg/$1" -v ON_ERROR_STOP=1 -qAt -c "$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Settings of every `vigil up` here: runs only when asked or triggered, vigil's own promotion
# rule and margin (BENCH_MARGIN overrides trainer.promotion_margin), no cross-validation (time),
# the accuracy trigger off (it
# would start runs at arbitrary points of a replay), and a review window that holds every
# replayed row (the queue chooses from the same rows as the random arm; the default window,
# 5 000, would leave out the oldest 497).
up_env() { # DB PREFIX RETRAIN_AFTER
    export VIGIL_DATABASE__URL="$pg/$1" VIGIL_NATS__PREFIX="$2"
    export VIGIL_TRAINER__SCHEDULE="0 0 3 1 1 *" VIGIL_TRAINER__MIN_NEW_EXAMPLES=1000000000
    export VIGIL_TRAINER__CROSS_VAL_FOLDS=0
    [ -z "${BENCH_MARGIN:-}" ] || export VIGIL_TRAINER__PROMOTION_MARGIN="$BENCH_MARGIN"
    export VIGIL_FEEDBACK__RETRAIN_AFTER_LABELS="$3" VIGIL_FEEDBACK__ACCURACY_FLOOR=0
    export VIGIL_FEEDBACK__REVIEW_WINDOW=$((replay_rows * 2))
    export VIGIL_PREDICTOR__REFRESH_SECS=5 VIGIL_TELEMETRY__HTTP_ADDR="127.0.0.1:0"
    export VIGIL_PREDICTOR__GRPC_ADDR="127.0.0.1:$(free_port)"
}

up_pid=""
start_up() { # LOG
    "$vigil" up > "$1" 2>&1 &
    up_pid=$!
    for _ in $(seq 1 600); do
        grep -q "vigil is up" "$1" && return 0
        kill -0 "$up_pid" 2>/dev/null || { cat "$1"; echo "vigil up exited"; exit 1; }
        sleep 0.2
    done
    cat "$1"; echo "vigil up did not come up in 120 s"; exit 1
}
stop_up() {
    [ -n "$up_pid" ] || return 0
    kill -INT "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
    up_pid=""
}
made_dbs=()
clean_up() {
    stop_up
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "kept: databases ${made_dbs[*]:-none}, NATS prefix ${run_id}*"
        return 0
    fi
    for db in "${made_dbs[@]}"; do psql_admin "drop database if exists $db" || true; done
    python3 "$root/bench/learning/cleanup.py" "${VIGIL_NATS__URL:-nats://127.0.0.1:4222}" \
        "${run_id}b" $(for arm in $arms; do echo "${run_id}${arm}"; done) || true
}
trap clean_up EXIT
echo "== run id $run_id"

ensembles() { psql_db "$1" "select count(*) from model_versions where model_type = 'ensemble'"; }
production() { psql_db "$1" "select version from model_versions where model_type = 'ensemble' and is_production"; }

evaluate() { # NAME FILE -> JSON file
    "$vigil" evaluate --production --data "$2" --format nsl-kdd --json > "$out/$1.json"
}

echo "== first model: trained on $(wc -l < "$out/data/base.txt") rows without the R2L families"
base_db="${run_id}_base"
psql_admin "create database $base_db"
made_dbs+=("$base_db")
up_env "$base_db" "${run_id}b" 1000000000
"$vigil" models import --data "$out/data/base.txt" --format nsl-kdd
start_up "$out/up-base.log"
"$vigil" models train --json > "$out/train-base.json"
stop_up
echo "production ensemble v$(production "$base_db")"
evaluate before-unseen "$out/data/fresh_unseen.txt"
evaluate before-fresh "$out/data/fresh.txt"

# Rounds: the replayed rows are cut into BENCH_ROUNDS consecutive parts (traffic of successive
# days); each part is replayed with its share of the verdicts, the trigger retrains on them, and
# the next part is scored by the model that came out (as AI² retrains daily). One round: the
# whole file, then one run.
rounds="${BENCH_ROUNDS:-1}"
split -n "l/$rounds" -d -a 2 "$out/data/replay.txt" "$out/data/replay-part-"
requests() { psql_db "$1" "select count(*) from retrain_requests"; }
answered() { psql_db "$1" "select count(*) from retrain_requests where run_id is not null"; }

for arm in $arms; do
    echo "== arm $arm ($rounds round(s))"
    db="${run_id}_$arm"
    psql_admin "create database $db template $base_db"
    made_dbs=("$db" "${made_dbs[@]}")
    before=$(ensembles "$db")
    started=$(date +%s)
    triggered=yes
    : > "$out/replay-$arm.txt"
    : > "$out/trigger-$arm.txt"
    round=0
    for part in "$out"/data/replay-part-*; do
        rows=$(wc -l < "$part")
        # This round's verdicts: its share of the budget (the last round takes the remainder).
        share_of_budget=$(( budget / rounds ))
        [ "$round" -eq $((rounds - 1)) ] && share_of_budget=$(( budget - share_of_budget * (rounds - 1) ))
        # The random arm's picks: seeds 7, 8, ... by default, BENCH_SEED x 100 + round with one.
        if [ -n "${BENCH_SEED:-}" ]; then pick_seed=$((BENCH_SEED * 100 + round)); else pick_seed=$((7 + round)); fi
        case "$arm" in
            all) verdicts=$rows; flags=() ;;
            queue) verdicts=$share_of_budget; flags=(--budget "$verdicts" --pick queue) ;;
            random) verdicts=$share_of_budget; flags=(--budget "$verdicts" --pick random --seed "$pick_seed") ;;
            *) echo "unknown arm $arm"; exit 1 ;;
        esac
        up_env "$db" "${run_id}${arm}" "$verdicts"
        start_up "$out/up-$arm-$round.log"
        asked=$(requests "$db")
        echo "-- round $((round + 1)) of $rounds: $rows rows, $verdicts verdicts"
        "$vigil" replay nsl-kdd "$part" --with-feedback "${flags[@]}" --rate "${BENCH_RATE:-0}" \
            > "$out/replay-$arm-$round.txt" 2>&1 || { cat "$out/replay-$arm-$round.txt"; exit 1; }
        tail -n 20 "$out/replay-$arm-$round.txt" | tee -a "$out/replay-$arm.txt"
        # The trigger fires when the round's verdicts are in (a row in retrain_requests; its
        # run_id is set when the trainer answered with the run's report). A refused verdict or
        # two would keep it from firing, so after 90 s without a request a run is asked for
        # (and the log says so).
        for _ in $(seq 1 90); do
            [ "$(requests "$db")" -gt "$asked" ] && break
            sleep 1
        done
        if [ "$(requests "$db")" -le "$asked" ]; then
            triggered=no
            echo "the trigger did not ask for a run within 90 s; asking for one"
            "$vigil" models train --json > "$out/train-$arm-$round.json"
        else
            for _ in $(seq 1 1800); do
                [ "$(answered "$db")" -gt "$asked" ] && break
                sleep 1
            done
            psql_db "$db" "select reason from retrain_requests order by requested_at desc limit 1" \
                >> "$out/trigger-$arm.txt"
        fi
        echo "after round $((round + 1)): production ensemble v$(production "$db")"
        stop_up
        round=$((round + 1))
    done
    [ "$(ensembles "$db")" -gt "$before" ] || { echo "no ensemble was trained in arm $arm"; exit 1; }
    echo "arm $arm: runs triggered by the feedback service: $triggered; production ensemble v$(production "$db"); $(($(date +%s) - started)) s"
    evaluate "after-$arm-unseen" "$out/data/fresh_unseen.txt"
    evaluate "after-$arm-fresh" "$out/data/fresh.txt"
    psql_db "$db" "select count(*) from feedback" > "$out/feedback-$arm.txt"
    psql_db "$db" "select coalesce(attack_type, label), count(*) from feedback group by 1 order by 2 desc" \
        > "$out/feedback-families-$arm.txt"
    echo "$triggered" > "$out/triggered-$arm.txt"
done

BENCH_ROUNDS="$rounds" python3 - "$out" "$arms" <<'EOF'
import json, os, sys
out, arms = sys.argv[1], sys.argv[2].split()
load = lambda n: json.load(open(os.path.join(out, n + ".json")))
summary = json.load(open(os.path.join(out, "data", "summary.json")))
rows = [("before (first model)", load("before-unseen"), load("before-fresh"), "—", "—")]
for arm in arms:
    verdicts = open(os.path.join(out, f"feedback-{arm}.txt")).read().strip()
    triggered = open(os.path.join(out, f"triggered-{arm}.txt")).read().strip()
    families = dict(line.rsplit("|", 1) for line in open(os.path.join(out, f"feedback-families-{arm}.txt")).read().split())
    held = sum(int(n) for f, n in families.items() if f in summary["held_out_families"])
    rows.append((f"after: {arm}", load(f"after-{arm}-unseen"), load(f"after-{arm}-fresh"), f"{verdicts} ({held} held-out)", triggered))
lines = [
    f"held-out families: {', '.join(summary['held_out_families'])}; replayed {summary['replay_rows']} rows "
    f"({summary['replay_held_out_rows']} of them held-out families); fresh {summary['fresh_rows']} rows "
    f"({summary['fresh_held_out_rows']} held-out)",
    "",
    f"rounds: {os.environ.get('BENCH_ROUNDS', '1')}",
    "",
    "| model in production | verdicts given | run by the trigger | unseen families detected (fresh) | accuracy (fresh) | precision | recall | F1 | threshold |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|",
]
for name, unseen, fresh, verdicts, triggered in rows:
    lines.append(
        f"| {name} | {verdicts} | {triggered} | {unseen['recall']:.4f} ({round(unseen['recall'] * unseen['rows'])} / {unseen['rows']}) "
        f"| {fresh['accuracy']:.4f} | {fresh['precision']:.4f} | {fresh['recall']:.4f} | {fresh['f1']:.4f} | {fresh['threshold']:.3f} |"
    )
report = "\n".join(lines)
open(os.path.join(out, "report.md"), "w").write(report + "\n")
print(report)
EOF
echo "results in $out"
