#!/usr/bin/env python3
"""Python peers for the vigil ML core benchmark.

Plain XGBoost, scikit-learn RandomForest, scikit-learn MLP and the average of the three, each
at the default threshold 0.5, with the same hyperparameters and feature treatment as vigil-ml's
defaults. For each: accuracy, precision, recall, F1 and ROC AUC on the reported rows, training
time (median of `--repeats` fits), single-row prediction p50 / p99 and batch rows/s.

    python3 bench/ml/compare.py [KDDTrain+.txt] [--threads 1|all] [--json]
    python3 bench/ml/compare.py --train train.csv --test test.csv [--label-column Label]
        [--drop-column C ...] [--threads 1|all] [--json]

NSL-KDD: a 70 / 15 / 15 stratified split of KDDTrain+ (seed 42), reported on the 15 % test part,
as crates/ml/benches/ml.rs does. CSV: trained on the train file, reported on the test file;
the MLP's early-stopping validation is carved from the train file (15 %), nothing is chosen on
the test file. Identifier columns are dropped by name (`--drop-column`; by default the ones
bench/ml/synth_flows.py writes, which vigil drops by its own rule).

`--threads 1`: every learner on one thread (n_jobs=1, nthread=1) and OMP / MKL / OpenBLAS
limited to one thread (set here before numpy loads; bench/ml/run.sh also pins the process to
one core with taskset). `--threads all` (default): n_jobs=-1 for the forest and XGBoost, BLAS
with its default threads.
"""

import os
import sys


def _threads_arg(argv):
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "all"


# Thread limits must be in the environment before numpy / scipy load their BLAS.
if _threads_arg(sys.argv) == "1":
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        os.environ[var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.metrics import (accuracy_score, f1_score, precision_score, recall_score,  # noqa: E402
                             roc_auc_score)
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from xgboost import XGBClassifier  # noqa: E402

NSL_KDD_COLUMNS = [
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
# The identifier columns bench/ml/synth_flows.py writes (vigil drops them by its rule).
FLOW_IDENTIFIERS = ["Unnamed: 0", "Flow ID", "Src IP", "Dst IP", "Timestamp"]
BENIGN_LABELS = {"normal", "benign", "0", "false"}
MEMBERS = ["xgboost", "random_forest", "neural_network"]
SINGLE_ROWS = 1000


def default_data():
    root = os.environ.get("VIGIL_DATA_DIR")
    if root is None:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.join(here, "..", "..", "..", "shared", "data", "nsl-kdd")
    return os.path.join(root, "KDDTrain+.txt")


def is_threat(labels):
    """vigil's default rule: `normal`, `benign`, `0`, `false` (any case, trailing dot) benign."""
    clean = labels.astype(str).str.strip().str.lower().str.rstrip(".")
    return (~clean.isin(BENIGN_LABELS)).to_numpy()


def standardise(train, *others):
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    return [(a - mean) / std for a in (train, *others)]


def nsl_kdd(path):
    """Features and labels of the train / validation / test parts of KDDTrain+."""
    t = time.perf_counter()
    df = pd.read_csv(path, header=None, names=NSL_KDD_COLUMNS)
    read_seconds = time.perf_counter() - t
    y = is_threat(df["label"])
    # Same treatment as vigil-ml: one-hot categoricals, log1p for heavy-tailed counts,
    # standardisation; the difficulty column is not a feature.
    x = df.drop(columns=["label", "difficulty"])
    x = pd.get_dummies(x, columns=["protocol_type", "service", "flag"], dtype=np.float32)
    for col in ["duration", "src_bytes", "dst_bytes", "count", "srv_count",
                "dst_host_count", "dst_host_srv_count", "hot", "num_compromised", "num_root"]:
        x[col] = np.log1p(x[col].clip(lower=0))
    x = x.to_numpy(dtype=np.float32)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, train_size=0.70, stratify=y, random_state=42)
    _x_val, x_test, _y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=42)
    # The validation part is left unused, as vigil uses it for early stopping and calibration
    # and the MLP here carves its own early-stopping rows from the training part.
    x_train, x_test = standardise(x_train, x_test)
    return x_train, y_train, x_test, y_test, len(df), read_seconds


def csv_files(train_path, test_path, label_column, drop):
    """Features and labels of a train CSV and a test CSV with the same columns."""
    t = time.perf_counter()
    train, test = pd.read_csv(train_path), pd.read_csv(test_path)
    read_seconds = time.perf_counter() - t
    y_train, y_test = is_threat(train[label_column]), is_threat(test[label_column])
    drop = [c for c in drop if c in train.columns] + [label_column]
    train, test = train.drop(columns=drop), test.drop(columns=drop)
    text = [c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
    # vigil's rule: non-negative numeric columns whose 99th percentile exceeds 100 get log1p.
    for c in train.columns:
        if c in text:
            continue
        if train[c].min() >= 0 and train[c].quantile(0.99) > 100:
            train[c], test[c] = np.log1p(train[c]), np.log1p(test[c].clip(lower=0))
    train = pd.get_dummies(train, columns=text, dtype=np.float32)
    # Categories the train file never had are dropped, as vigil sends them to `<other>`.
    test = pd.get_dummies(test, columns=text, dtype=np.float32).reindex(
        columns=train.columns, fill_value=0.0)
    x_train, x_test = standardise(train.to_numpy(dtype=np.float32),
                                  test.to_numpy(dtype=np.float32))
    return x_train, y_train, x_test, y_test, read_seconds


def learners(threads):
    jobs = 1 if threads == 1 else -1
    return {
        "xgboost": XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.15,
                                 subsample=0.8, colsample_bytree=0.6, min_child_weight=2,
                                 reg_lambda=2.0, tree_method="hist", n_jobs=jobs,
                                 random_state=42),
        "random_forest": RandomForestClassifier(n_estimators=100, max_depth=14,
                                                min_samples_leaf=3, max_features=0.15,
                                                max_samples=0.5, n_jobs=jobs, random_state=42),
        "neural_network": MLPClassifier(hidden_layer_sizes=(64, 32), alpha=1e-4, batch_size=512,
                                        learning_rate_init=2e-3, max_iter=30,
                                        early_stopping=True, validation_fraction=0.15,
                                        n_iter_no_change=4, random_state=42),
    }


def metrics(y, proba):
    pred = proba >= 0.5
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "auc": float(roc_auc_score(y, proba)),
    }


def latency(predict, rows):
    """Single-row p50 / p99 in µs, one row at a time as an in-process API would be called."""
    for row in rows[:50]:
        predict(row[None, :])
    times = []
    for row in rows:
        t = time.perf_counter()
        predict(row[None, :])
        times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    return times[len(times) // 2], times[int(0.99 * (len(times) - 1))]


def main():
    parser = argparse.ArgumentParser(description="Python peers of the vigil ML benchmark")
    parser.add_argument("data", nargs="?", help="KDDTrain+.txt (NSL-KDD mode)")
    parser.add_argument("--train", help="train CSV (CSV mode)")
    parser.add_argument("--test", help="test CSV (CSV mode)")
    parser.add_argument("--label-column", default="Label")
    parser.add_argument("--drop-column", action="append", default=None)
    parser.add_argument("--name", help="data set name in the output")
    parser.add_argument("--threads", default="all", choices=["1", "all"])
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", 3)))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    threads = 1 if args.threads == "1" else (os.cpu_count() or 1)

    results = {"threads": threads, "affinity_cores": len(os.sched_getaffinity(0))}
    t = time.perf_counter()
    if args.train:
        if not args.test:
            parser.error("--train needs --test")
        drop = args.drop_column if args.drop_column is not None else FLOW_IDENTIFIERS
        x_train, y_train, x_test, y_test, read_seconds = csv_files(
            args.train, args.test, args.label_column, drop)
        results["dataset"] = args.name or os.path.basename(os.path.dirname(
            os.path.abspath(args.train))) or "csv"
        results["reported_on"] = args.test
    else:
        path = args.data or default_data()
        x_train, y_train, x_test, y_test, rows, read_seconds = nsl_kdd(path)
        results["dataset"] = args.name or "nsl-kdd"
        results["reported_on"] = "15 % test split of " + path
        results["rows"] = rows
    results["read_seconds"] = read_seconds
    results["features_seconds"] = time.perf_counter() - t - read_seconds
    results["train_rows"], results["test_rows"] = len(y_train), len(y_test)

    models = learners(threads)
    fit_seconds = {name: [] for name in models}
    for _ in range(max(1, args.repeats)):
        for name, model in models.items():
            t = time.perf_counter()
            model.fit(x_train, y_train)
            fit_seconds[name].append(time.perf_counter() - t)
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    sums = [sum(fit_seconds[n][i] for n in models) for i in range(len(fit_seconds[MEMBERS[0]]))]

    probas = {name: m.predict_proba(x_test)[:, 1] for name, m in models.items()}
    probas["average"] = sum(probas[n] for n in MEMBERS) / 3.0
    predictors = {name: (lambda rows, m=m: m.predict_proba(rows)[:, 1])
                  for name, m in models.items()}
    predictors["average"] = lambda rows: sum(predictors[n](rows) for n in MEMBERS) / 3.0
    single = x_test[:SINGLE_ROWS]
    out = {}
    for name in MEMBERS + ["average"]:
        entry = metrics(y_test, probas[name])
        # The average's time covers the feature treatment and the three fits, as vigil's
        # ensemble time covers its features, members and calibration.
        entry["train_seconds"] = (median(fit_seconds[name]) if name in fit_seconds
                                  else median(sums) + results["features_seconds"])
        entry["predict_single_p50_us"], entry["predict_single_p99_us"] = latency(
            predictors[name], single)
        t = time.perf_counter()
        predictors[name](x_test)
        entry["predict_batch_rows_per_second"] = len(x_test) / (time.perf_counter() - t)
        out[name] = entry
    results["models"] = out

    if args.json:
        print(json.dumps(results))
    else:
        print(f"python peers on {results['dataset']} ({results['train_rows']} train rows, "
              f"{results['test_rows']} reported rows), {threads} thread(s)")
        keys = ["accuracy", "precision", "recall", "f1", "auc", "train_seconds",
                "predict_single_p50_us", "predict_single_p99_us", "predict_batch_rows_per_second"]
        print(f"  {'model':<15}" + "".join(f"{k[:14]:>15}" for k in keys))
        for name, entry in out.items():
            print(f"  {name:<15}" + "".join(f"{entry[k]:>15.4f}" for k in keys))


if __name__ == "__main__":
    main()
