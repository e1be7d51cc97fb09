"""Trains LightGBM on the rows gbm_vs_lightgbm wrote, with the same settings; prints its time,
its leaves and its training log loss.

Usage: lightgbm_fit.py DATA ROWS FEATURES ROUNDS THREADS (DATA: float32 rows, label last).
Timed like Carecast's side: binning (Dataset construction) plus boosting. Equal work: LightGBM's
default (not `deterministic`, which Carecast's own determinism needs no flag for), and its
histogram layout (col-wise or row-wise) chosen before the clock starts, by a short untimed trial
of each, so that its automatic trial of both is not timed either.
Prints "seconds leaves train_log_loss layout".
"""
import sys
import time

import lightgbm as lgb
import numpy as np

path, rows, features, rounds, threads = sys.argv[1], *map(int, sys.argv[2:])
data = np.fromfile(path, dtype="<f4").reshape(rows, features + 1)
x, y = data[:, :features].astype(np.float64), data[:, features]
params = {
    "objective": "binary",
    "num_leaves": 31,
    "learning_rate": 0.1,
    "min_data_in_leaf": 20,
    "lambda_l2": 0.0,
    "max_bin": 255,
    "num_threads": threads,
    "verbose": -1,
}


def train(layout, n_rounds):
    dataset = lgb.Dataset(x, label=y, params={"max_bin": 255, "verbose": -1})
    dataset.construct()  # binning, untimed here: only the boosting rounds are compared
    started = time.perf_counter()
    lgb.train({**params, layout: True}, dataset, num_boost_round=n_rounds)
    return time.perf_counter() - started


layout = min(["force_col_wise", "force_row_wise"], key=lambda l: train(l, 5))
started = time.perf_counter()
booster = lgb.train({**params, layout: True}, lgb.Dataset(x, label=y), num_boost_round=rounds)
elapsed = time.perf_counter() - started
assert booster.num_trees() == rounds
leaves = sum(t["num_leaves"] for t in booster.dump_model()["tree_info"])
p = np.clip(booster.predict(x), 1e-15, 1 - 1e-15)
loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
print(f"{elapsed:.4f} {leaves} {loss:.6f} {layout.removeprefix('force_')}")
