#!/usr/bin/env python3
"""Splits KDDTrain+ for the learning-loop benchmark (bench/learning/run.sh).

Every R2L ("remote to local") family is held out of the first model's training data entirely:
warezclient, guess_passwd, warezmaster, imap, ftp_write, multihop, phf, spy. R2L is the
category NSL-KDD's own test file is known to hold far more of, and the one the supervised
models generalise to least; the choice was made from that, before any run of this benchmark.

    python3 bench/learning/prepare.py KDDTrain+.txt OUT_DIR [--seed 20261205]

Writes, headerless NSL-KDD rows as in the input:
- base.txt: the first model's training data (every row but the held-out families and the
  reserved ordinary traffic);
- replay.txt: half of the held-out families' rows, mixed at random with ordinary traffic
  (rows of the other families and normal rows the first model never saw): what the running
  system sees and what analysts are asked about;
- fresh.txt: the other half of the held-out families' rows and other unseen ordinary
  traffic: never fed back, scored before and after;
- fresh_unseen.txt: the held-out families' rows of fresh.txt alone (detection rate);
- summary.json: the counts.
"""

import json
import os
import random
import sys

HELD_OUT = {
    "warezclient", "guess_passwd", "warezmaster", "imap", "ftp_write", "multihop", "phf", "spy",
}
# Ordinary traffic reserved from the first model's data, for replay and for fresh, each.
ORDINARY_EACH = 5000


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    seed = 20261205
    if "--seed" in sys.argv:
        seed = int(sys.argv[sys.argv.index("--seed") + 1])
        args = [a for a in args if a != str(seed)]
    if len(args) != 2:
        sys.exit(__doc__)
    source, out = args
    rng = random.Random(seed)
    with open(source) as f:
        rows = [line for line in f if line.strip()]
    held = [r for r in rows if r.split(",")[41] in HELD_OUT]
    other = [r for r in rows if r.split(",")[41] not in HELD_OUT]
    rng.shuffle(held)
    rng.shuffle(other)
    half = len(held) // 2
    held_replay, held_fresh = held[:half], held[half:]
    ordinary_replay = other[:ORDINARY_EACH]
    ordinary_fresh = other[ORDINARY_EACH:2 * ORDINARY_EACH]
    base = other[2 * ORDINARY_EACH:]
    replay = held_replay + ordinary_replay
    rng.shuffle(replay)
    fresh = held_fresh + ordinary_fresh
    rng.shuffle(fresh)
    os.makedirs(out, exist_ok=True)
    for name, part in [("base.txt", base), ("replay.txt", replay), ("fresh.txt", fresh),
                       ("fresh_unseen.txt", held_fresh)]:
        with open(os.path.join(out, name), "w") as f:
            f.writelines(part)

    def families(part):
        counts = {}
        for r in part:
            label = r.split(",")[41]
            if label in HELD_OUT:
                counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))

    summary = {
        "seed": seed,
        "held_out_families": sorted(HELD_OUT),
        "base_rows": len(base),
        "replay_rows": len(replay),
        "replay_held_out_rows": len(held_replay),
        "replay_held_out_families": families(held_replay),
        "fresh_rows": len(fresh),
        "fresh_held_out_rows": len(held_fresh),
        "fresh_held_out_families": families(held_fresh),
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
