"""XGBoost's side of population_vs_xgboost: a register scored end to end with explanations.

Usage: xgboost_population.py MODEL INPUT.parquet OUTPUT.parquet TOP THREADS. Reads the register
(pyarrow), scores and explains every row with pred_contribs (exact TreeSHAP) on THREADS threads,
keeps each row's TOP largest contributions by size, and writes key, probability and the named
contributions to Parquet: the work `carecast score --top TOP` does, less its input checks,
sentences and audit. Prints "seconds peak_rss_kib rows".
"""
import resource
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

model, source, target, top, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
started = time.perf_counter()
booster = xgb.Booster(model_file=model)
booster.set_param({"nthread": threads})
names = booster.feature_names
table = pq.read_table(source)
x = np.column_stack([table.column(n).to_numpy(zero_copy_only=False).astype(np.float32) for n in names])
contribs = booster.predict(xgb.DMatrix(x, missing=np.nan, feature_names=names, nthread=threads), pred_contribs=True)
margin = contribs.sum(axis=1, dtype=np.float64)
probability = 1.0 / (1.0 + np.exp(-margin))
phi = contribs[:, :-1]
largest = np.argpartition(-np.abs(phi), top, axis=1)[:, :top]
order = np.take_along_axis(largest, np.argsort(-np.abs(np.take_along_axis(phi, largest, axis=1)), axis=1), axis=1)
columns = {"sno": table.column("sno"), "probability": probability}
labels = np.array(names, dtype=object)
for k in range(top):
    columns[f"factor_{k + 1}"] = pa.array(labels[order[:, k]]).dictionary_encode()
    columns[f"factor_{k + 1}_contribution"] = np.take_along_axis(phi, order[:, k : k + 1], axis=1)[:, 0].astype(np.float64)
pq.write_table(pa.table(columns), target)
seconds = time.perf_counter() - started
print(f"{seconds:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} {len(probability)}")
