"""XGBoost's side of explain_vs_xgboost: explains and scores the rows Carecast wrote, one thread.

Usage: xgboost_explain.py MODEL ROWS_FILE N_ROWS N_FEATURES (ROWS_FILE: float32, row-major).
Prints "pred_contribs_rows_per_s inplace_predict_rows_per_s".
"""
import sys
import time

import numpy as np
import xgboost as xgb

model, path, rows, features = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = np.fromfile(path, dtype="<f4").reshape(rows, features)
booster = xgb.Booster(model_file=model)
booster.set_param({"nthread": 1})
explain = x[: min(rows, 3000)]
dmatrix = xgb.DMatrix(explain, nthread=1)
started = time.perf_counter()
booster.predict(dmatrix, pred_contribs=True)
contribs = len(explain) / (time.perf_counter() - started)
booster.inplace_predict(x[:1000])  # warm-up
started = time.perf_counter()
booster.inplace_predict(x, predict_type="margin")
predict = rows / (time.perf_counter() - started)
print(f"{contribs:.1f} {predict:.1f}")
