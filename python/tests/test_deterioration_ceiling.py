"""The deterioration ceiling (benches/deterioration_ceiling.py), the best risk any model can
estimate from what a ward records on `carecast synth` data, against what actually happened: its
risks add up to the observed deteriorations and, within their sampling error, to the true risks
(checked inside `ceiling`: a copy of the generator's model that drifted from training/src/synth.rs
so far that its risks are off by a fifth fails), and it does not beat the true risk it estimates."""

import importlib.util

import numpy as np
from sklearn.metrics import roc_auc_score

from conftest import ROOT


def test_the_bayes_risk_from_the_record_is_calibrated_and_below_the_truth(tmp_path):
    import carecast

    carecast.synth(str(tmp_path / "synth"), patients=4000, seed=5, shard_size=4000)
    spec = importlib.util.spec_from_file_location("ceiling", ROOT / "benches" / "deterioration_ceiling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    y, true, bayes, _ = module.ceiling(str(tmp_path / "synth"))

    assert len(y) > 1000 and y.sum() > 40, (len(y), y.sum())
    # Observed deteriorations against the Bayes risks' sum: observation sets of one stay share
    # one outcome, so allow four Poisson standard errors and 15% on top.
    expected = bayes.sum()
    assert abs(y.sum() - expected) < 4 * np.sqrt(expected) + 0.15 * expected, (y.sum(), expected)
    assert np.corrcoef(bayes, true)[0, 1] > 0.9
    truth_auc, bayes_auc = roc_auc_score(y, true), roc_auc_score(y, bayes)
    assert 0.75 < bayes_auc < truth_auc + 0.01, (bayes_auc, truth_auc)
