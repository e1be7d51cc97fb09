"""`carecast.Client` against a running `carecast serve`: models listed, a real patient scored and
explained as the package scores them in process, a bad request refused naming the field, a
batch and a stream answered per request."""

import math

import grpc
import pandas as pd
import pytest

import carecast
from carecast.client import score_request
from conftest import SUPPORT


def test_the_client_scores_and_explains_as_the_package_does(server, registry):
    model = carecast.load(registry, "support2_hospdead-gbm")
    rows = pd.read_csv(SUPPORT).head(8)
    row = rows.iloc[[7]]
    features = {f: (None if pd.isna(v) else (v if isinstance(v, str) else float(v)))
                for f, v in row[model.features].iloc[0].items()}
    client = carecast.Client(server)

    assert model.name in {m.name for m in client.list_models()}
    r = client.score(model.name, "py-1", features)
    local = model.score(row)
    assert r.probability == local["probability"][0] and r.model_version == model.version
    contributions = sum(c.contribution for c in r.contributions)
    assert abs(r.base_value + contributions - r.margin) < 1e-9 and r.additivity_error < 1e-9
    assert abs(sum(f.contribution for f in r.factors) - contributions) < 1e-9
    assert all(c.explanation for c in r.contributions)

    dropped = sorted(features)[0]
    bad = {k: v for k, v in features.items() if k != dropped}
    with pytest.raises(grpc.RpcError) as err:
        client.score(model.name, "py-2", bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and dropped in err.value.details()

    absurd = dict(features, age=712.0)
    with pytest.raises(grpc.RpcError) as err:
        client.score(model.name, "py-3", absurd)
    assert "age" in err.value.details() and "712" not in err.value.details()

    results = client.score_batch([score_request(model.name, "py-4", features), score_request(model.name, "py-5", bad)])
    assert results[0].WhichOneof("outcome") == "score" and results[0].score.probability == r.probability
    assert results[1].WhichOneof("outcome") == "error"
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]

    streamed = client.score_stream(score_request(model.name, f"py-{6 + i}", features) for i in range(3))
    assert [s.score.probability for s in streamed] == [r.probability] * 3
    assert not math.isnan(r.probability)
    client.close()
