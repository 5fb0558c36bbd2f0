#!/usr/bin/env python3
"""Python baseline for the vigil ML core benchmark.

Trains scikit-learn RandomForest + xgboost + scikit-learn MLP on NSL-KDD (KDDTrain+.txt) with
the same split, feature treatment and hyperparameters as vigil-ml's defaults, timed the same
way as crates/ml/benches/ml.rs: training time per model and for the trio, single-row
prediction p50/p99 of the averaged trio, batch rows/s.

    python3 bench/ml/compare.py [KDDTrain+.txt] [--json]
"""

import json
import os
import sys
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from xgboost import XGBClassifier

COLUMNS = [
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land",
    "wrong_fragment", "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised",
    "root_shell", "su_attempted", "num_root", "num_file_creations", "num_shells",
    "num_access_files", "num_outbound_cmds", "is_host_login", "is_guest_login", "count",
    "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
    "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count",
    "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
    "label", "difficulty",
]
THREADS = os.cpu_count() or 1
# xgboost gets one thread as in vigil-ml (see BoostConfig::threads); RandomForest uses all.


def default_data():
    root = os.environ.get("VIGIL_DATA_DIR")
    if root is None:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.join(here, "..", "..", "..", "shared", "data", "nsl-kdd")
    return os.path.join(root, "KDDTrain+.txt")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    as_json = "--json" in sys.argv
    path = args[0] if args else default_data()
    results = {}

    t = time.perf_counter()
    df = pd.read_csv(path, header=None, names=COLUMNS)
    results["read_seconds"] = time.perf_counter() - t
    results["rows"] = len(df)
    y = (df["label"] != "normal").to_numpy()
    # Same treatment as vigil-ml: one-hot categoricals, log1p for heavy-tailed counts,
    # standardisation; the difficulty column is not a feature.
    t = time.perf_counter()
    x = df.drop(columns=["label", "difficulty"])
    x = pd.get_dummies(x, columns=["protocol_type", "service", "flag"], dtype=np.float32)
    for col in ["duration", "src_bytes", "dst_bytes", "count", "srv_count",
                "dst_host_count", "dst_host_srv_count", "hot", "num_compromised", "num_root"]:
        x[col] = np.log1p(x[col].clip(lower=0))
    x = x.to_numpy(dtype=np.float32)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, train_size=0.70, stratify=y, random_state=42)
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=42)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train, x_val, x_test = [(a - mean) / std for a in (x_train, x_val, x_test)]
    results["train_features_seconds"] = time.perf_counter() - t

    rf = RandomForestClassifier(n_estimators=100, max_depth=14, min_samples_leaf=3,
                                max_features=0.15, max_samples=0.5, n_jobs=THREADS,
                                random_state=42)
    xgb = XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.15, subsample=0.8,
                        colsample_bytree=0.6, min_child_weight=2, reg_lambda=2.0,
                        tree_method="hist", n_jobs=1, random_state=42)
    mlp = MLPClassifier(hidden_layer_sizes=(64, 32), alpha=1e-4, batch_size=512,
                        learning_rate_init=2e-3, max_iter=30, early_stopping=True,
                        validation_fraction=0.15, n_iter_no_change=4, random_state=42)
    models = {"random_forest": rf, "xgboost": xgb, "neural_network": mlp}
    # Median of three runs of the trio, as the Rust side takes the median of three.
    totals = []
    for _ in range(3):
        total = 0.0
        for name, model in models.items():
            t = time.perf_counter()
            model.fit(x_train, y_train)
            elapsed = time.perf_counter() - t
            total += elapsed
            results.setdefault(f"train_{name}_seconds", elapsed)
        totals.append(total)
    totals.sort()
    results["train_trio_seconds"] = totals[1]
    # Features + the three models: compare with vigil's train_ensemble_fit_seconds.
    results["train_ensemble_seconds"] = totals[1] + results["train_features_seconds"]

    def trio(rows):
        return sum(m.predict_proba(rows)[:, 1] for m in models.values()) / 3.0

    proba = trio(x_test)
    results["test_accuracy"] = float(((proba >= 0.5) == y_test).mean())

    # Single-row latency: one row at a time through all three models (the in-process API).
    single = x_test[:2000]
    for row in single[:100]:
        trio(row[None, :])
    latencies = []
    for row in single:
        t = time.perf_counter()
        trio(row[None, :])
        latencies.append((time.perf_counter() - t) * 1e6)
    latencies.sort()
    results["predict_single_p50_us"] = latencies[len(latencies) // 2]
    results["predict_single_p99_us"] = latencies[int(0.99 * (len(latencies) - 1))]

    t = time.perf_counter()
    trio(x_test)
    results["predict_batch_rows_per_second"] = len(x_test) / (time.perf_counter() - t)

    if as_json:
        print(json.dumps(results))
    else:
        print(f"python (scikit-learn + xgboost) on {path} ({len(df)} rows)")
        for k in sorted(results):
            print(f"  {k:<32} {results[k]:>12.3f}")


if __name__ == "__main__":
    main()
