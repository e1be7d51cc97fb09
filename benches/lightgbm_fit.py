"""Trains LightGBM on the rows gbm_vs_lightgbm wrote, with the same settings; prints seconds.

Usage: lightgbm_fit.py DATA ROWS FEATURES ROUNDS THREADS (DATA: float32 rows, label last).
Timed like Carecast's side: binning (Dataset construction) plus boosting.
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
    "deterministic": True,
}
started = time.perf_counter()
booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=rounds)
elapsed = time.perf_counter() - started
assert booster.num_trees() == rounds
print(f"{elapsed:.4f}")
