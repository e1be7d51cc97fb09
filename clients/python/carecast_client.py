"""A Python client for Carecast's gRPC API, generated from the same `proto/carecast/v1/carecast.proto`
the server is built from (grpcio and grpcio-tools from PyPI: `pip install -r requirements.txt`).

    client = CarecastClient("127.0.0.1:50051")
    response = client.score("support2_hospdead-gbm", "pseudonymous-key", {"age": 71.2, "sex": "female", "alb": None})

Stubs are generated on first import into a cache directory, so the client always matches the proto
it is given.
"""
import importlib
import os
import sys
import tempfile

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def _stubs(proto_root=PROTO_ROOT):
    """Compiles carecast.proto with grpc_tools and imports the generated modules."""
    from grpc_tools import protoc

    out = os.path.join(tempfile.gettempdir(), f"carecast-python-stubs-{os.getuid()}")
    os.makedirs(out, exist_ok=True)
    proto = os.path.join("carecast", "v1", "carecast.proto")
    code = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}", proto])
    if code != 0:
        raise RuntimeError(f"protoc failed on {proto} ({code})")
    if out not in sys.path:
        sys.path.insert(0, out)
    return importlib.import_module("carecast.v1.carecast_pb2"), importlib.import_module("carecast.v1.carecast_pb2_grpc")


pb, pb_grpc = _stubs()


def feature_value(value):
    """A number, a category (str) or None (not recorded) as a FeatureValue."""
    if value is None:
        return pb.FeatureValue(missing=True)
    if isinstance(value, str):
        return pb.FeatureValue(category=value)
    return pb.FeatureValue(number=float(value))


def score_request(model, patient_key, features, max_contributions=0):
    return pb.ScoreRequest(
        model=model,
        patient_key=patient_key,
        features={k: feature_value(v) for k, v in features.items()},
        max_contributions=max_contributions,
    )


class CarecastClient:
    def __init__(self, address, credentials=None):
        import grpc

        channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
        self.scoring = pb_grpc.ScoringServiceStub(channel)
        self.models = pb_grpc.ModelServiceStub(channel)

    def score(self, model, patient_key, features, max_contributions=0, timeout=10.0):
        return self.scoring.Score(score_request(model, patient_key, features, max_contributions), timeout=timeout)

    def score_batch(self, requests, timeout=60.0):
        return self.scoring.ScoreBatch(pb.ScoreBatchRequest(requests=requests), timeout=timeout).results

    def score_stream(self, requests, timeout=60.0):
        return list(self.scoring.ScoreStream(iter(requests), timeout=timeout))

    def list_models(self):
        return self.models.ListModels(pb.ListModelsRequest()).models
