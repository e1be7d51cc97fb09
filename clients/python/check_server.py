"""Checks a running Carecast server through the Python client: models listed, one patient scored
and explained (contributions and clinical factors add up), a bad request refused naming the
field, a batch and a stream answered per request. Prints the score as JSON on the last line.

Usage: check_server.py ADDRESS REQUEST_JSON  (REQUEST_JSON: {"model": ..., "features": {...}})
"""
import json
import sys

import grpc

from carecast_client import CarecastClient, pb, score_request

address, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    request = json.load(f)
model, features = request["model"], request["features"]
client = CarecastClient(address)

assert model in {m.name for m in client.list_models()}, "model listed"

r = client.score(model, "py-1", features)
assert 0.0 < r.probability < 1.0
assert r.risk_band != pb.RISK_BAND_UNSPECIFIED and r.model_version
contributions = sum(c.contribution for c in r.contributions)
assert abs(r.base_value + contributions - r.margin) < 1e-9 and r.additivity_error < 1e-9
assert abs(sum(f.contribution for f in r.factors) - contributions) < 1e-9
assert all(c.explanation for c in r.contributions)

dropped = sorted(features)[0]
bad = {k: v for k, v in features.items() if k != dropped}
try:
    client.score(model, "py-2", bad)
    raise AssertionError("a request without a feature must be refused")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and dropped in e.details(), e.details()

results = client.score_batch([score_request(model, "py-3", features), score_request(model, "py-4", bad)])
assert results[0].WhichOneof("outcome") == "score" and results[0].score.probability == r.probability
assert results[1].WhichOneof("outcome") == "error" and results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]

streamed = client.score_stream(score_request(model, f"py-{5 + i}", features) for i in range(3))
assert [s.score.probability for s in streamed] == [r.probability] * 3

print(json.dumps({"probability": r.probability, "model_version": r.model_version, "factors": len(r.factors)}))
