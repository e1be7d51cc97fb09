"""NVIDIA's Triton client (`tritonclient` from PyPI, gRPC and HTTP) calling `carecast serve`
over the Open Inference Protocol (KServe V2), as a Triton or KServe user would point their
tools at it: health and metadata, real SUPPORT patients scored exactly as the package scores
them in process with their explanation as a second tensor, a bad request refused naming the
input, and every row audited."""

import json
import urllib.request

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import carecast
from conftest import SUPPORT, cli

ROWS = 20
OUTPUTS = ["probability", "risk_band", "margin", "base_value", "contributions"]


def tensors(module, metadata, rows, keys, **binary):
    """One input tensor per model input, from the table's columns, as the metadata types them:
    FP64 with NaN for a value not recorded, BYTES with an empty string."""
    inputs = []
    for spec in metadata:
        name, datatype = spec["name"], spec["datatype"]
        if name == "patient_key":
            values = np.array([k.encode() for k in keys], dtype=object)
        elif datatype == "FP64":
            values = rows[name].astype(float).to_numpy()
        else:
            values = np.array([b"" if pd.isna(v) else str(v).encode() for v in rows[name]], dtype=object)
        tensor = module.InferInput(name, [len(rows), 1], datatype)
        tensor.set_data_from_numpy(values.reshape(-1, 1), **binary)
        inputs.append(tensor)
    return inputs


def check(result, local, width):
    probability = result.as_numpy("probability")
    np.testing.assert_allclose(probability, local["probability"].to_numpy(), rtol=0, atol=1e-12)
    bands = [b.decode() if isinstance(b, bytes) else b for b in result.as_numpy("risk_band")]
    assert bands == list(local["risk_band"])
    contributions = result.as_numpy("contributions")
    assert contributions.shape == (len(local), width)
    additivity = result.as_numpy("base_value") + contributions.sum(axis=1) - result.as_numpy("margin")
    assert np.abs(additivity).max() < 1e-9


def test_triton_clients_score_over_the_open_inference_protocol(server, registry, tmp_path):
    model = carecast.load(registry, "support2_hospdead-gbm")
    rows = pd.read_csv(SUPPORT).head(ROWS)
    local = model.score(rows)

    # gRPC: health, metadata, then the batch with raw tensors (tritonclient's default).
    client = grpcclient.InferenceServerClient(url=server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(model.name)
    metadata = client.get_model_metadata(model.name, as_json=True)
    names = [i["name"] for i in metadata["inputs"]]
    assert names == ["patient_key", *model.features]
    assert {o["name"] for o in metadata["outputs"]} == set(OUTPUTS)
    assert model.version in metadata["versions"]
    requested = [grpcclient.InferRequestedOutput(o) for o in OUTPUTS]
    keys = [f"oip-grpc-{i}" for i in range(ROWS)]
    result = client.infer(model.name, tensors(grpcclient, metadata["inputs"], rows, keys), outputs=requested)
    assert result.get_response().model_version == model.version
    check(result, local, len(model.features))

    # A missing input is refused, naming it; the request scores nothing.
    partial = [t for t in tensors(grpcclient, metadata["inputs"], rows, keys) if t.name() != "meanbp"]
    with pytest.raises(InferenceServerException) as err:
        client.infer(model.name, partial)
    assert "input `meanbp`: required" in str(err.value)
    client.close()

    # HTTP: inputs in Triton's binary tensor extension (its default), outputs as JSON.
    http = httpclient.InferenceServerClient(url=server)
    assert http.is_server_live() and http.is_model_ready(model.name)
    assert [i["name"] for i in http.get_model_metadata(model.name)["inputs"]] == names
    keys = [f"oip-http-{i}" for i in range(ROWS)]
    requested = [httpclient.InferRequestedOutput(o, binary_data=False) for o in OUTPUTS]
    result = http.infer(model.name, tensors(httpclient, metadata["inputs"], rows, keys), outputs=requested)
    check(result, local, len(model.features))
    # The REST form in plain JSON, as any HTTP client sends it: a value not recorded is null
    # (JSON has no NaN).
    two = rows.head(2)
    inputs = [{"name": "patient_key", "datatype": "BYTES", "shape": [2, 1], "data": ["oip-json-0", "oip-json-1"]}]
    for spec in metadata["inputs"][1:]:
        values = [None if pd.isna(v) else (float(v) if spec["datatype"] == "FP64" else str(v)) for v in two[spec["name"]]]
        inputs.append({"name": spec["name"], "datatype": spec["datatype"], "shape": [2, 1], "data": values})
    assert any(v is None for i in inputs for v in i["data"]), "some values are not recorded"
    request = urllib.request.Request(f"http://{server}/v2/models/{model.name}/infer", method="POST",
                                     data=json.dumps({"id": "r1", "inputs": inputs}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        answer = json.load(response)
    assert answer["id"] == "r1" and answer["model_version"] == model.version
    probability = next(o for o in answer["outputs"] if o["name"] == "probability")["data"]
    np.testing.assert_allclose(probability, local["probability"].to_numpy()[:2], rtol=0, atol=1e-12)
    http.close()

    # Every row scored is on the trail (the refused request left none).
    scored = 2 * ROWS + 2
    verified = cli("audit", "verify", "--audit", str(tmp_path / "server-audit.jsonl"), cwd=tmp_path)
    assert f": {scored} records, chain intact" in verified, verified
