"""XGBoost's side of explain_vs_xgboost: explains and scores the rows Carecast wrote, one thread.

Usage: xgboost_explain.py MODEL ROWS_FILE N_ROWS N_FEATURES EXPLAIN_ROWS (ROWS_FILE: float32,
row-major). Explains the first EXPLAIN_ROWS rows (as Carecast does) and predicts all of them, each
timed after a warm-up call (as Carecast's SHAP tables are built before its clock starts).
Prints "pred_contribs_rows_per_s inplace_predict_rows_per_s".
"""
import sys
import time

import numpy as np
import xgboost as xgb

model, path, rows, features, explain_rows = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
x = np.fromfile(path, dtype="<f4").reshape(rows, features)
booster = xgb.Booster(model_file=model)
booster.set_param({"nthread": 1})
explain = xgb.DMatrix(x[:explain_rows], nthread=1)
booster.predict(xgb.DMatrix(x[:100], nthread=1), pred_contribs=True)  # warm-up
started = time.perf_counter()
booster.predict(explain, pred_contribs=True)
contribs = explain_rows / (time.perf_counter() - started)
booster.inplace_predict(x[:1000])  # warm-up
started = time.perf_counter()
booster.inplace_predict(x, predict_type="margin")
predict = rows / (time.perf_counter() - started)
print(f"{contribs:.1f} {predict:.1f}")
