#!/usr/bin/env python3
"""Synthetic labelled network flows in the shape of CICFlowMeter / UNSW-NB15 exports.

No public flow data set can be fetched on this machine (only package registries; no PyPI
package checked ships one), so the ML benchmark's second data set is generated here. It is
meant to differ in shape from NSL-KDD (flow counters instead of connection-window counters,
CICFlowMeter-style column names with spaces, a multi-class label, identifier columns that a
reader must drop) and to be hard enough that no model reaches 100 %.

    python3 bench/ml/synth_flows.py OUT_DIR [--train-rows 100000] [--test-rows 40000] [--seed 20261204]

writes OUT_DIR/train.csv and OUT_DIR/test.csv and prints their SHA-256. Deterministic: the
same seed, row counts and numpy version give byte-identical files. The two files come from the
same process with independent random streams (`numpy.random.SeedSequence(seed).spawn(2)`:
stream 0 for train, stream 1 for test), so test rows are fresh draws, never copies of train rows.

Columns
-------
Identifiers (not traffic features; a reader must drop them): ``Unnamed: 0`` (a row counter
0, 1, 2, ... as pandas leaves it), ``Flow ID`` (``src-dst-sport-dport-proto``), ``Src IP``,
``Dst IP``, ``Timestamp`` (rising, exponential gaps). ``Src Port`` is a uniformly random
ephemeral port for every kind (pure noise, kept as CICFlowMeter keeps it).

Features: ``Dst Port``, ``Protocol`` (6 / 17), ``Service`` (text: http, ssl, dns, ssh, ftp,
smtp, ntp, smb, -), ``State`` (text: FIN, CON, INT, REQ, RST), ``Flow Duration`` (µs),
``Tot Fwd Pkts``, ``Tot Bwd Pkts``, ``TotLen Fwd Pkts``, ``TotLen Bwd Pkts`` (bytes),
``Pkt Size Avg``, ``Flow IAT Mean``, ``Flow IAT Std`` (µs), ``SYN Flag Cnt``,
``RST Flag Cnt``, ``FIN Flag Cnt``.

Label: ``BENIGN``, ``DDoS``, ``PortScan``, ``BruteForce``, ``Exfiltration``, ``WebAttack``
(``BENIGN`` is benign by vigil's default rule; every other class is an attack).

Generative model
----------------
Each row first draws a kind, then its features from that kind's distributions. Counts are
``max(lo, round(LN(m, s)))`` where ``LN(m, s)`` is log-normal with median ``m`` and log-sd
``s``; per-packet sizes are log-normal, clipped to 40-1500 bytes; byte totals are packets x
size x LN(1, 0.1); ``Flow IAT Mean = duration / (packets - 1)`` (0 for one packet) and
``Flow IAT Std = IAT mean x CV`` with a kind-specific log-normal CV.

Benign, 72 % of rows, eight kinds (share of benign rows):
  web 34 %        tcp 443/80, fwd LN(8, .9) pkts of LN(90, .5) B, bwd fwd x LN(1.3, .3) pkts
                  of LN(900, .5) B, duration LN(1.5 s, 1.4), CV LN(1.5, .5)
  health check 8 %  tcp 80/443/8080, 3-6 fwd pkts of LN(100, .4) B, 2-5 bwd of LN(1000, .6) B,
                  LN(50 ms, .8) (short like an HTTP flood)
  dns 22 %        udp 53, 1-2 / 0-1 pkts, LN(70, .2) B queries, LN(30 ms, 1)
  ntp 5 %         udp 123, 1 / 1 pkts of ~90 B
  mail 6 %        tcp 25/587, fwd LN(20, .7), LN(400, .6) B
  ssh 7 %         tcp 22: interactive (LN(150, 1.2) pkts, LN(60 s, 1.5)) or, 20 %, scripted
                  (LN(30, .4) pkts, LN(4 s, .7), like brute force)
  upload 5 %      tcp 443/22/445, LN(2000, 1.2) fwd pkts of ~1300 B, LN(30 s, 1.2),
                  CV LN(2, .5) (like slow exfiltration, but bursty)
  refused 5 %     tcp to application ports (8080, 3389, 5432, ...) and 10 % random ports,
                  1-3 fwd / 0-1 bwd pkts, RST, LN(800 µs, 1) (like a port scan)
Attacks, 28 % of rows (share of attack rows):
  DDoS 34 %       70 % HTTP flood (tcp 80, LN(4, .4) fwd pkts of LN(110, .4) B, 2-4 bwd of
                  LN(200, .6) B, LN(10 ms, 1), CV LN(.8, .4)); 30 % SYN flood (1-3 SYN-only
                  pkts, 0-1 bwd, 40-60 B)
  PortScan 26 %   tcp SYN to a uniform random port (50 %) or a common port (50 %), 1-2 fwd /
                  0-1 bwd (RST) pkts, LN(60 µs, 1)
  BruteForce 17 % tcp 22 (70 %) / 21, LN(18, .25) pkts each way of LN(100, .3) B, LN(2.5 s, .5)
  Exfiltration 13 %  80 %: tcp 443/8443, LN(300, .8) fwd pkts of LN(700, .5) B, LN(300 s, .8),
                  regular timing CV LN(.35, .3); 20 %: DNS tunnel, udp 53, LN(220, .2) B queries
  WebAttack 10 %  like web, but fwd LN(5, .5) pkts of LN(350, .45) B, bwd of LN(600, .7) B,
                  LN(0.5 s, 1)
Flags: SYN 1 per TCP flow (SYN floods and scans: one per forward packet), FIN 2 on a clean
close, RST on refusals and resets (kind-specific probabilities); State follows the flags.
The overlaps were set once, before any vigil run, so that plain XGBoost (100 rounds, depth 6)
lands near 97 % accuracy, as on a public flow data set measured earlier (issue 15); nothing was
chosen with vigil's results.
Label noise: 1 % of rows get a label drawn uniformly from the other five classes (annotation
error, as in real captures), so no model can be right about every row.
"""

import argparse
import hashlib
import os
import sys

import numpy as np
import pandas as pd

SEED = 20261204
LABELS = ["BENIGN", "DDoS", "PortScan", "BruteForce", "Exfiltration", "WebAttack"]
BENIGN_SHARE = 0.72
BENIGN_KINDS = {  # share of benign rows
    "web": 0.34, "health": 0.08, "dns": 0.22, "ntp": 0.05, "mail": 0.06, "ssh": 0.07,
    "upload": 0.05, "refused": 0.05,
}
ATTACK_KINDS = {  # share of attack rows
    "DDoS": 0.34, "PortScan": 0.26, "BruteForce": 0.17, "Exfiltration": 0.13, "WebAttack": 0.10,
}
LABEL_NOISE = 0.01
PORT_SERVICE = {80: "http", 8080: "http", 443: "ssl", 8443: "ssl", 53: "dns", 22: "ssh",
                21: "ftp", 25: "smtp", 587: "smtp", 123: "ntp", 445: "smb"}
COMMON_PORTS = np.array([21, 22, 23, 25, 53, 80, 110, 135, 139, 143, 443, 445, 993, 995,
                         1433, 3306, 3389, 5432, 5900, 8080])
APP_PORTS = np.array([8080, 3389, 5432, 3306, 8443, 9200, 6379, 27017, 5900, 1433])


class Draw:
    """Vectorised draws for `n` rows of one kind."""

    def __init__(self, rng, n):
        self.rng, self.n = rng, n

    def ln(self, median, sigma):
        return median * np.exp(sigma * self.rng.standard_normal(self.n))

    def count(self, median, sigma, lo=1):
        return np.maximum(lo, np.rint(self.ln(median, sigma))).astype(np.int64)

    def size(self, median, sigma):
        return np.clip(self.ln(median, sigma), 40.0, 1500.0)

    def ints(self, lo, hi):  # inclusive
        return self.rng.integers(lo, hi + 1, self.n)

    def choice(self, values, p=None):
        return np.asarray(values)[self.rng.choice(len(values), self.n, p=p)]

    def bern(self, p):
        return self.rng.random(self.n) < p


def flows(d, *, proto, dport, fwd, bwd, fwd_size, bwd_size, duration, cv, syn=None, fin=None,
          rst=None):
    """Assembles a kind's columns from its per-row draws."""
    n = d.n
    noise = lambda: d.ln(1.0, 0.1)  # noqa: E731
    fwd_bytes = np.rint(fwd * fwd_size * noise())
    bwd_bytes = np.rint(bwd * bwd_size * noise())
    packets = fwd + bwd
    tcp = proto == 6
    if syn is None:
        syn = np.where(tcp, 1, 0)
    if fin is None:
        fin = np.where(tcp & d.bern(0.9), 2, 0)
    if rst is None:
        rst = np.where(tcp & d.bern(0.05), 1, 0)
    syn, fin, rst = (np.where(tcp, a, 0) for a in (syn, fin, rst))
    duration = np.where(packets > 1, np.rint(duration), 0)
    iat_mean = np.where(packets > 1, duration / np.maximum(packets - 1, 1), 0.0)
    iat_std = np.where(packets > 2, iat_mean * cv, 0.0)
    state = np.where(
        ~tcp, np.where(bwd > 0, "CON", "INT"),
        np.where(rst > 0, "RST", np.where(fin > 0, "FIN", np.where(bwd > 0, "INT", "REQ"))))
    service = np.array([PORT_SERVICE.get(int(p), "-") for p in dport])
    return {
        "Dst Port": dport.astype(np.int64), "Protocol": np.full(n, 0) + proto,
        "Service": service, "State": state, "Flow Duration": duration.astype(np.int64),
        "Tot Fwd Pkts": fwd, "Tot Bwd Pkts": bwd,
        "TotLen Fwd Pkts": fwd_bytes.astype(np.int64),
        "TotLen Bwd Pkts": bwd_bytes.astype(np.int64),
        "Pkt Size Avg": np.round((fwd_bytes + bwd_bytes) / np.maximum(packets, 1), 3),
        "Flow IAT Mean": np.round(iat_mean, 3), "Flow IAT Std": np.round(iat_std, 3),
        "SYN Flag Cnt": syn.astype(np.int64), "RST Flag Cnt": rst.astype(np.int64),
        "FIN Flag Cnt": fin.astype(np.int64),
    }


def benign(kind, d):
    tcp = np.full(d.n, 6)
    if kind == "web":
        fwd = d.count(8, 0.9, lo=2)
        return flows(d, proto=tcp, dport=d.choice([443, 80], [0.8, 0.2]), fwd=fwd,
                     bwd=np.maximum(1, np.rint(fwd * d.ln(1.3, 0.3))).astype(np.int64),
                     fwd_size=d.size(90, 0.5), bwd_size=d.size(900, 0.5),
                     duration=d.ln(1.5e6, 1.4), cv=d.ln(1.5, 0.5))
    if kind == "health":
        return flows(d, proto=tcp, dport=d.choice([80, 443, 8080], [0.3, 0.4, 0.3]),
                     fwd=d.ints(3, 6), bwd=d.ints(2, 5), fwd_size=d.size(100, 0.4),
                     bwd_size=d.size(1000, 0.6), duration=d.ln(5e4, 0.8), cv=d.ln(0.9, 0.4))
    if kind == "dns":
        return flows(d, proto=np.full(d.n, 17), dport=np.full(d.n, 53),
                     fwd=np.where(d.bern(0.9), 1, 2), bwd=np.where(d.bern(0.95), 1, 0),
                     fwd_size=d.size(70, 0.2), bwd_size=d.size(160, 0.5),
                     duration=d.ln(3e4, 1.0), cv=d.ln(0.5, 0.3))
    if kind == "ntp":
        return flows(d, proto=np.full(d.n, 17), dport=np.full(d.n, 123), fwd=np.ones(d.n, int),
                     bwd=np.ones(d.n, int), fwd_size=d.size(90, 0.05),
                     bwd_size=d.size(90, 0.05), duration=d.ln(2e4, 0.8), cv=d.ln(0.5, 0.3))
    if kind == "mail":
        fwd = d.count(20, 0.7, lo=4)
        return flows(d, proto=tcp, dport=d.choice([25, 587], [0.6, 0.4]), fwd=fwd,
                     bwd=np.maximum(2, np.rint(fwd * d.ln(0.8, 0.2))).astype(np.int64),
                     fwd_size=d.size(400, 0.6), bwd_size=d.size(80, 0.3),
                     duration=d.ln(8e5, 0.9), cv=d.ln(1.2, 0.4))
    if kind == "ssh":
        scripted = d.bern(0.2)
        fwd = np.where(scripted, d.count(30, 0.4, lo=6), d.count(150, 1.2, lo=12))
        return flows(d, proto=tcp, dport=np.full(d.n, 22), fwd=fwd,
                     bwd=np.maximum(1, np.rint(fwd * d.ln(0.9, 0.15))).astype(np.int64),
                     fwd_size=d.size(120, 0.6), bwd_size=d.size(140, 0.6),
                     duration=np.where(scripted, d.ln(4e6, 0.7), d.ln(6e7, 1.5)),
                     cv=np.where(scripted, d.ln(1.1, 0.3), d.ln(3.0, 0.5)))
    if kind == "upload":
        fwd = d.count(2000, 1.2, lo=20)
        return flows(d, proto=tcp, dport=d.choice([443, 22, 445], [0.6, 0.2, 0.2]), fwd=fwd,
                     bwd=np.maximum(1, np.rint(fwd * d.ln(0.5, 0.3))).astype(np.int64),
                     fwd_size=d.size(1300, 0.1), bwd_size=d.size(60, 0.2),
                     duration=d.ln(3e7, 1.2), cv=d.ln(2.0, 0.5))
    if kind == "refused":
        dport = np.where(d.bern(0.9), d.choice(APP_PORTS), d.ints(1024, 65535))
        bwd = np.where(d.bern(0.8), 1, 0)
        return flows(d, proto=tcp, dport=dport, fwd=d.ints(1, 3), bwd=bwd,
                     fwd_size=d.size(55, 0.2), bwd_size=d.size(45, 0.1),
                     duration=d.ln(8e2, 1.0), cv=d.ln(0.8, 0.5), fin=np.zeros(d.n, int),
                     rst=np.where(bwd > 0, 1, 0))
    raise ValueError(kind)


def attack(kind, d):
    tcp = np.full(d.n, 6)
    if kind == "DDoS":
        syn_flood = d.bern(0.3)
        fwd = np.where(syn_flood, d.ints(1, 3), d.count(4, 0.4, lo=2))
        bwd = np.where(syn_flood, np.where(d.bern(0.4), 1, 0), d.ints(2, 4))
        return flows(d, proto=tcp, dport=np.full(d.n, 80), fwd=fwd, bwd=bwd,
                     fwd_size=np.where(syn_flood, d.size(50, 0.1), d.size(110, 0.4)),
                     bwd_size=np.where(syn_flood, d.size(45, 0.1), d.size(200, 0.6)),
                     duration=np.where(syn_flood, d.ln(2e3, 1.5), d.ln(1e4, 1.0)),
                     cv=d.ln(0.8, 0.4), syn=np.where(syn_flood, fwd, 1),
                     fin=np.where(syn_flood | d.bern(0.3), 0, 2),
                     rst=np.where(syn_flood & (bwd > 0), 1, np.where(d.bern(0.1), 1, 0)))
    if kind == "PortScan":
        dport = np.where(d.bern(0.5), d.ints(1, 65535), d.choice(COMMON_PORTS))
        bwd = np.where(d.bern(0.7), 1, 0)
        return flows(d, proto=tcp, dport=dport, fwd=np.where(d.bern(0.8), 1, 2), bwd=bwd,
                     fwd_size=d.size(50, 0.15), bwd_size=d.size(45, 0.1),
                     duration=d.ln(60, 1.0), cv=d.ln(0.5, 0.5), fin=np.zeros(d.n, int),
                     rst=np.where(bwd > 0, 1, 0))
    if kind == "BruteForce":
        fwd = d.count(18, 0.25, lo=6)
        return flows(d, proto=tcp, dport=d.choice([22, 21], [0.7, 0.3]), fwd=fwd,
                     bwd=np.maximum(1, np.rint(fwd * d.ln(1.0, 0.15))).astype(np.int64),
                     fwd_size=d.size(100, 0.3), bwd_size=d.size(110, 0.3),
                     duration=d.ln(2.5e6, 0.5), cv=d.ln(1.0, 0.3),
                     rst=np.where(d.bern(0.2), 1, 0))
    if kind == "WebAttack":
        fwd = d.count(5, 0.5, lo=2)
        return flows(d, proto=tcp, dport=d.choice([80, 443, 8080], [0.5, 0.4, 0.1]), fwd=fwd,
                     bwd=np.maximum(1, np.rint(fwd * d.ln(1.1, 0.3))).astype(np.int64),
                     fwd_size=d.size(350, 0.45), bwd_size=d.size(600, 0.7),
                     duration=d.ln(5e5, 1.0), cv=d.ln(1.3, 0.5))
    if kind == "Exfiltration":
        tunnel = d.bern(0.2)
        fwd = np.where(tunnel, d.ints(1, 2), d.count(300, 0.8, lo=10))
        bwd = np.where(tunnel, 1, np.maximum(1, np.rint(fwd * d.ln(0.6, 0.3))).astype(np.int64))
        return flows(d, proto=np.where(tunnel, 17, 6),
                     dport=np.where(tunnel, 53, d.choice([443, 8443], [0.8, 0.2])), fwd=fwd,
                     bwd=bwd, fwd_size=np.where(tunnel, d.size(220, 0.2), d.size(700, 0.5)),
                     bwd_size=np.where(tunnel, d.size(200, 0.4), d.size(70, 0.3)),
                     duration=np.where(tunnel, d.ln(4e4, 1.0), d.ln(3e8, 0.8)),
                     cv=np.where(tunnel, d.ln(0.5, 0.3), d.ln(0.35, 0.3)))
    raise ValueError(kind)


def generate(rows, rng, start):
    """`rows` flows from `rng`, in time order from `start` (a numpy datetime64)."""
    is_attack = rng.random(rows) >= BENIGN_SHARE
    kinds = np.empty(rows, dtype=object)
    b_names, b_p = list(BENIGN_KINDS), np.array(list(BENIGN_KINDS.values()))
    a_names, a_p = list(ATTACK_KINDS), np.array(list(ATTACK_KINDS.values()))
    kinds[~is_attack] = np.asarray(b_names, dtype=object)[
        rng.choice(len(b_names), (~is_attack).sum(), p=b_p / b_p.sum())]
    kinds[is_attack] = np.asarray(a_names, dtype=object)[
        rng.choice(len(a_names), is_attack.sum(), p=a_p / a_p.sum())]
    columns = None
    label = np.where(is_attack, kinds, "BENIGN").astype(object)
    for kind in b_names + a_names:  # fixed order: deterministic draws
        idx = np.flatnonzero(kinds == kind)
        d = Draw(rng, len(idx))
        part = benign(kind, d) if kind in BENIGN_KINDS else attack(kind, d)
        if columns is None:
            columns = {k: np.empty(rows, dtype=v.dtype if v.dtype != object else object)
                       for k, v in part.items()}
            for k in ("Service", "State"):
                columns[k] = np.empty(rows, dtype=object)
        for k, v in part.items():
            columns[k][idx] = v
    # Annotation errors: a label drawn uniformly from the other classes.
    noisy = np.flatnonzero(rng.random(rows) < LABEL_NOISE)
    for i in noisy:
        others = [c for c in LABELS if c != label[i]]
        label[i] = others[rng.integers(len(others))]

    # Identifiers: hosts, ports, times. Attackers come from outside, clients from inside,
    # which a model could learn, so these columns must never be inputs.
    clients = np.array([f"10.0.{i // 250}.{i % 250 + 2}" for i in range(600)])
    outside = np.array([f"{a}.{b}.{c}.{e}" for a, b, c, e in
                        rng.integers(1, 224, (400, 4))])
    servers = np.array([f"{a}.{b}.{c}.{e}" for a, b, c, e in rng.integers(1, 224, (800, 4))])
    src = np.where(is_attack, outside[rng.integers(0, len(outside), rows)],
                   clients[rng.integers(0, len(clients), rows)])
    dst = servers[rng.integers(0, len(servers), rows)]
    sport = rng.integers(49152, 65536, rows)
    gaps_ms = rng.exponential(25.0, rows)
    times = start + np.cumsum(gaps_ms * 1000).astype("timedelta64[us]")
    stamp = pd.Series(times).dt.strftime("%Y-%m-%d %H:%M:%S.%f").to_numpy()
    proto = columns["Protocol"]
    flow_id = [f"{s}-{t}-{sp}-{dp}-{p}" for s, t, sp, dp, p in
               zip(src, dst, sport, columns["Dst Port"], proto)]
    frame = pd.DataFrame({
        "Unnamed: 0": np.arange(rows), "Flow ID": flow_id, "Src IP": src, "Src Port": sport,
        "Dst IP": dst, "Timestamp": stamp, **columns, "Label": label,
    })
    return frame


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--test-rows", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    train_seq, test_seq = np.random.SeedSequence(args.seed).spawn(2)
    parts = [("train.csv", args.train_rows, train_seq, "2026-11-02T08:00:00"),
             ("test.csv", args.test_rows, test_seq, "2026-11-09T08:00:00")]
    for name, rows, seq, start in parts:
        frame = generate(rows, np.random.Generator(np.random.PCG64(seq)),
                         np.datetime64(start, "us"))
        path = os.path.join(args.out_dir, name)
        frame.to_csv(path, index=False, lineterminator="\n")
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        counts = frame["Label"].value_counts().to_dict()
        print(f"{path}: {rows} rows, sha256 {digest[:16]}, labels {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
