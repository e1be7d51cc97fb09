"""The best AUROC any model can reach on `carecast synth`'s deterioration task from the record.

The true 24-hour risk written beside the synthetic data (`deterioration_truth.parquet`) reads the
latent severity, its rate of change and the planned length of stay, none of which a ward records.
The ceiling for a model is the Bayes risk from the record: E[true risk | every observation set so
far, age, time since admission, no deterioration yet]. This computes it on a grid over the latent
(s0, m) with the generator's own priors and reading model (rounding, clamps, the oxygen and ACVPU
flags), conditions on survival to now and averages over the planned discharge (uniform on 1-10
days, after now). It measures; it fits nothing and no model reads it. The grid is fine enough: one
twice as fine in both directions moved the AUROC on 4,000 patients by 3e-6 and no risk by more
than 2e-4.

The constants mirror `inpatient_stay` in training/src/synth.rs and must change with it. The
script checks the tower property, E[Bayes risk - true risk] = 0, against its sampling error (stays
independent, the sets of one stay not). That error is wide (the planned discharge, which the
record never shows, moves the true risk a lot): on 4,000 patients a copy whose risks are off by
about a fifth fails, a smaller drift passes.

    python benches/deterioration_ceiling.py DIR   # DIR written by `carecast synth --out DIR`

Needs polars, numpy, scipy and scikit-learn (as python/tests installs them). About 3 minutes
for the 14,309 held-out observation sets of 20,000 patients.
"""
import glob
import sys

import numpy as np
import polars as pl
from scipy.special import log_ndtr, ndtr
from sklearn.metrics import roc_auc_score

HAZARD_A, HAZARD_B = -4.6, 1.1
YEAR, DAY = 365.25 * 86400, 86400.0
# code: (intercept, slope on severity, noise sd, rounding step, lowest, highest reading)
READINGS = {
    "VITAL//RESPIRATION_RATE": (16.0, 3.5, 2.0, 1.0, 6.0, np.inf),
    "VITAL//SPO2": (97.0, -2.2, 1.0, 1.0, 70.0, 100.0),
    "VITAL//SYSTOLIC_BP": (125.0, -11.0, 10.0, 1.0, 50.0, np.inf),
    "VITAL//PULSE": (78.0, 11.0, 8.0, 1.0, 30.0, np.inf),
    "VITAL//TEMPERATURE": (37.0, 0.35, 0.35, 0.1, -np.inf, np.inf),
}
# code: the severity above which the flag is set, through noise of sd 0.5
FLAGS = {"VITAL//SUPPLEMENTAL_OXYGEN": 2.0, "VITAL//ACVPU": 3.0}

S0 = np.concatenate([[-1.0], np.linspace(-0.975, 5.0, 240)])  # s0 = max(N, -1): a mass at -1
M = np.linspace(-1.75, 1.75, 141)
s0g, mg = np.meshgrid(S0, M, indexing="ij")
GL_X, GL_W = np.polynomial.legendre.leggauss(16)


def cumulative_hazard(t1, t2):
    base, k = np.exp(HAZARD_A + HAZARD_B * s0g), HAZARD_B * mg
    small = np.abs(k) < 1e-9
    return np.where(small, base * (t2 - t1), base * (np.exp(k * t2) - np.exp(k * t1)) / np.where(small, 1.0, k))


def log_reading(y, mean, sd, step, lo, hi):
    """log P(the rounded, clamped reading is y | severity)."""
    a = -np.inf if y - step / 2 <= lo else (y - step / 2 - mean) / sd
    b = np.inf if y + step / 2 >= hi else (y + step / 2 - mean) / sd
    return np.log(np.maximum(ndtr(b) - ndtr(a), 1e-300))


def log_prior(age):
    mu, sd = 0.3 + 0.02 * (age - 60.0), 0.8
    ds = S0[2] - S0[1]
    p = np.exp(-0.5 * ((S0 - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)) * ds
    p[0] = ndtr((-1.0 - mu) / sd)
    return np.log(p)[:, None] - 0.5 * (mg / 0.35) ** 2


def risks(stay):
    """The Bayes risk at each of one stay's observation sets, in time order."""
    age = (stay["index"][0] - stay["birth"][0]).total_seconds() / YEAR
    log_post = log_prior(age)
    t = (stay["time"] - stay["admit"]).dt.total_seconds().to_numpy() / DAY
    out = []
    for i, row in enumerate(stay.iter_rows(named=True)):
        s = s0g + mg * t[i]
        for code, (c, k, sd, step, lo, hi) in READINGS.items():
            log_post = log_post + log_reading(row[code], c + k * s, sd, step, lo, hi)
        for code, cut in FLAGS.items():
            z = (s - cut) / 0.5
            log_post = log_post + (log_ndtr(z) if row[code] > 0.5 else log_ndtr(-z))
        # No deterioration before now; the planned discharge, independent of severity, is after now.
        lp = log_post - cumulative_hazard(0.0, t[i])
        p = np.exp(lp - lp.max())
        p /= p.sum()
        lo = max(1.0, t[i])
        ends = lo + (10.0 - lo) * (GL_X + 1) / 2
        risk = sum(w / 2 * (1 - np.exp(-cumulative_hazard(t[i], min(t[i] + 1, end)))) for end, w in zip(ends, GL_W))
        out.append(float((p * risk).sum()))
    return out


def ceiling(root):
    """The held-out observation sets' outcomes, true risks and Bayes risks from the record."""
    data = pl.concat([pl.read_parquet(f) for f in glob.glob(root + "/data/**/*.parquet", recursive=True)])
    held = pl.read_parquet(root + "/metadata/subject_splits.parquet").filter(pl.col("split") == "held_out")
    data = data.join(held.select("subject_id"), on="subject_id")
    truth = pl.read_parquet(root + "/deterioration_truth.parquet").rename({"prediction_time": "time"})
    truth = truth.join(held.select("subject_id"), on="subject_id")
    first = lambda code, name: data.filter(pl.col("code") == code).select("subject_id", pl.col("time").alias(name))
    sets = (
        data.filter(pl.col("code").is_in(list(READINGS) + list(FLAGS)))
        .join(truth.select("subject_id", "time"), on=["subject_id", "time"])
        .pivot(on="code", index=["subject_id", "time"], values="numeric_value", aggregate_function="first")
        .join(first("VISIT//INPATIENT_ADMISSION", "admit"), on="subject_id")
        .join(first("MEDS_BIRTH", "birth"), on="subject_id")
        .join(first("CARECAST//INDEX", "index"), on="subject_id")
        .join(truth, on=["subject_id", "time"])
        .sort("subject_id", "time")
    )
    assert len(sets) == len(truth), f"{len(sets)} complete observation sets for {len(truth)} truths"
    bayes = np.concatenate([risks(stay) for _, stay in sets.group_by("subject_id", maintain_order=True)])
    y, true = sets["deteriorated_within_24h"].to_numpy(), sets["risk_24h"].to_numpy()
    stays = sets["subject_id"].to_numpy()
    # The tower property: E[E[risk | record] - risk] = 0. A drifted copy of the generator fails here.
    by_stay = pl.DataFrame({"stay": stays, "d": bayes - true}).group_by("stay").agg(pl.col("d").sum())["d"]
    se = np.sqrt(len(by_stay) * by_stay.var()) / len(true)
    gap = (bayes - true).mean()
    assert abs(gap) < 4 * se, f"mean Bayes risk {bayes.mean()} against true {true.mean()} (SE {se:.2g})"
    return y, true, bayes, stays


def bootstrap_gap(y, true, bayes, stays, reps=200, seed=1):
    """AUROC(true) - AUROC(Bayes) and its 95% interval, resampling stays."""
    ids, index = np.unique(stays, return_inverse=True)
    rows = [np.flatnonzero(index == k) for k in range(len(ids))]
    rng, gaps = np.random.default_rng(seed), []
    for _ in range(reps):
        take = np.concatenate([rows[k] for k in rng.integers(0, len(ids), len(ids))])
        gaps.append(roc_auc_score(y[take], true[take]) - roc_auc_score(y[take], bayes[take]))
    return roc_auc_score(y, true) - roc_auc_score(y, bayes), np.percentile(gaps, [2.5, 97.5])


def main(root):
    y, true, bayes, stays = ceiling(root)
    print(f"{len(y)} held-out observation sets in {len(np.unique(stays))} stays, {y.sum()} deteriorations within 24 h")
    print(f"mean risk: true {true.mean():.4f}, Bayes from the record {bayes.mean():.4f}, observed {y.mean():.4f}")
    print(f"AUROC: true risk {roc_auc_score(y, true):.4f}, Bayes risk from the record {roc_auc_score(y, bayes):.4f}")
    gap, (lo, hi) = bootstrap_gap(y, true, bayes, stays)
    print(f"true - Bayes: {gap:.4f} (95% CI {lo:.4f} to {hi:.4f}, 200 resamples of stays)")


if __name__ == "__main__":
    main(sys.argv[1])
