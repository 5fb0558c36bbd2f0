#!/usr/bin/env python3
"""Prints the tables of a bench/ml/run.sh results folder (markdown, for docs/benchmarks.md).

    python3 bench/ml/report.py bench/.results/<time>
"""

import json
import os
import re
import sys

COLUMNS = ["accuracy", "precision", "recall", "f1", "auc"]


def load(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read().strip()
    if name.endswith(".json"):
        # cargo may print lines of its own before the JSON line.
        lines = [line for line in text.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    return text


def row(name, threads, m, train, p50, p99, batch):
    m = dict(m, auc=m.get("auc", m.get("auc_roc")))  # `vigil evaluate` says auc_roc
    cells = [f"{100 * m['accuracy']:.2f} %"] + [f"{m[k]:.4f}" for k in COLUMNS[1:]]
    cells += [train, p50, p99, batch]
    return f"| {name} | {threads} | " + " | ".join(cells) + " |"


def fmt_s(x):
    return "—" if x is None else f"{x:.2f} s"


def fmt_us(x):
    if x is None:
        return "—"
    return f"{x:,.1f} µs" if x < 1000 else f"{x / 1000:,.2f} ms"


def fmt_rate(x):
    return "—" if x is None else f"{x:,.0f}"


def main():
    folder = sys.argv[1]
    machine = load(folder, "machine.txt") or ""
    print(machine)
    load_lines = load(folder, "load.txt") or ""
    for line in load_lines.splitlines():
        mode, *avg = line.split()
        print(f"load average at the start of the {mode}-thread runs: {' '.join(avg)}")
    print()
    header = ("| model | threads | accuracy | precision | recall | F1 | AUC | train | "
              "single-row p50 | p99 | batch rows/s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
              "---:|---:|")
    modes = sorted({re.sub(r".*-(\w+)\.json$", r"\1", f) for f in os.listdir(folder)
                    if f.startswith("python-")}, key=lambda m: (m != "1", m))
    for dataset in ["nsl-kdd", "flows"]:
        print(f"### {dataset}\n")
        print(header)
        notes = []
        for mode in modes:
            if dataset == "nsl-kdd":
                rust = load(folder, f"rust-nsl-kdd-{mode}.json")
                if rust:
                    m = rust["test_metrics"]["ensemble"]
                    print(row("**vigil ensemble**", rust.get("threads_available", mode), m,
                              fmt_s(rust["train_ensemble_fit_seconds"]),
                              fmt_us(rust["predict_single_p50_us"]),
                              fmt_us(rust["predict_single_p99_us"]),
                              fmt_rate(rust["predict_batch_rows_per_second"])))
                    for member in ["random_forest", "xgboost", "neural_network"]:
                        mm = rust["test_metrics"].get(member)
                        key = f"train_{member}_seconds"
                        if mm:
                            print(row(f"vigil {member} (at the ensemble's threshold)",
                                      rust.get("threads_available", mode), mm,
                                      fmt_s(rust.get(key)), "—", "—", "—"))
                    notes.append(f"vigil, {mode} thread(s): {rust.get('operating_point', '?')}; "
                                 f"whole train_ensemble {rust['train_ensemble_seconds']:.2f} s")
            else:
                variants = [("default", "**vigil ensemble** (defaults)"),
                            ("accuracy-no-novelty",
                             "**vigil ensemble** (operating point accuracy, no novelty member)")]
                for variant, title in variants:
                    name = f"flows-{variant}-{mode}"
                    evaluate = load(folder, f"rust-{name}-evaluate.json")
                    score = load(folder, f"rust-{name}-score.json")
                    train = load(folder, f"rust-{name}-train.txt") or ""
                    wall = load(folder, f"rust-{name}-train.seconds")
                    total = re.search(r"total ([0-9.]+)s", train)
                    if not (evaluate and score):
                        continue
                    threads = score.get("threads_available", mode)
                    print(row(title, threads, evaluate,
                              fmt_s(float(total.group(1)) if total else None),
                              fmt_us(score["predict_single_p50_us"]),
                              fmt_us(score["predict_single_p99_us"]),
                              fmt_rate(score["predict_batch_rows_per_second"])))
                    times = {k: float(v) for k, v in re.findall(
                        r"(random forest|xgboost|neural network) ([0-9.]+)s", train)}
                    for member, label in [("random_forest", "random forest"),
                                          ("xgboost", "xgboost"),
                                          ("neural_network", "neural network")]:
                        mm = evaluate["models"].get(member)
                        if mm:
                            print(row(f"vigil {member} (at the ensemble's threshold)", threads,
                                      mm, fmt_s(times.get(label)), "—", "—", "—"))
                    point = re.search(r"operating point: (.*)", train)
                    notes.append(f"vigil ({variant}), {mode} thread(s): "
                                 f"{point.group(1) if point else '?'}; `vigil train` wall "
                                 f"{float(wall):.2f} s (reading, splitting, test split, writing "
                                 "included)")
            py = load(folder, f"python-{dataset}-{mode}.json")
            if py:
                for name in ["xgboost", "random_forest", "neural_network", "average"]:
                    m = py["models"][name]
                    print(row(f"python {name} (0.5)", py["threads"], m, fmt_s(m["train_seconds"]),
                              fmt_us(m["predict_single_p50_us"]),
                              fmt_us(m["predict_single_p99_us"]),
                              fmt_rate(m["predict_batch_rows_per_second"])))
                notes.append(f"python, {mode} thread(s): {py['train_rows']} train rows, "
                             f"{py['test_rows']} reported rows ({py['reported_on']})")
        print()
        for note in notes:
            print(f"- {note}")
        print()


if __name__ == "__main__":
    main()
