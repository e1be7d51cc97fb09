"""A client for a running ``carecast serve`` (gRPC, ``carecast.v1``): ``pip install carecast[client]``.

    client = carecast.Client("ehr-gateway:50051", token=jwt, tls=True)
    r = client.score("support2_hospdead-gbm", "pseudonymous-key", {"age": 71.2, "sex": "female", "alb": None})
    r.probability, r.risk_band, [(f.name, f.explanation) for f in r.factors]

Messages and calls are made from the API's descriptors compiled into this package when it was
built (from ``proto/carecast/v1/carecast.proto``), so the client always matches the server of the
same release; nothing is generated on import.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Union

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from . import _carecast

_PACKAGE = "carecast.v1"


def _pool() -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString(_carecast.descriptor_set()).file
    pool = descriptor_pool.DescriptorPool()
    added: set = set()
    pending = list(files)
    while pending:  # each file after the files it imports
        ready = [f for f in pending if all(d in added for d in f.dependency)]
        if not ready:
            # Imports outside the set are protobuf's well-known types, which the default pool has.
            for f in pending:
                for d in f.dependency:
                    if d not in added and d not in {p.name for p in pending}:
                        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(
                            descriptor_pool.Default().FindFileByName(d).serialized_pb))
                        added.add(d)
            continue
        for f in ready:
            pool.Add(f)
            added.add(f.name)
            pending.remove(f)
    return pool


POOL = _pool()


def message(name: str, **fields: Any) -> Any:
    """A ``carecast.v1`` message by name: ``message("FeatureValue", number=71.2)``."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))(**fields)


def feature_value(value: Union[None, str, float, int]) -> Any:
    """A number, a category (``str``) or ``None`` (not recorded) as a ``FeatureValue``."""
    if value is None:
        return message("FeatureValue", missing=True)
    if isinstance(value, str):
        return message("FeatureValue", category=value)
    return message("FeatureValue", number=float(value))


def score_request(model: str, patient_key: str, features: Dict[str, Any], max_contributions: int = 0) -> Any:
    return message(
        "ScoreRequest",
        model=model,
        patient_key=patient_key,
        features={k: feature_value(v) for k, v in features.items()},
        max_contributions=max_contributions,
    )


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Service:
    """Every method of one gRPC service, as snake_case callables taking and returning messages."""

    def __init__(self, channel: grpc.Channel, name: str, metadata: List[tuple]) -> None:
        service = POOL.FindServiceByName(f"{_PACKAGE}.{name}")
        for method in service.methods:
            request = message_factory.GetMessageClass(method.input_type)
            response = message_factory.GetMessageClass(method.output_type)
            kind = ("stream" if method.client_streaming else "unary") + "_" + (
                "stream" if method.server_streaming else "unary")
            call = getattr(channel, kind)(
                f"/{service.full_name}/{method.name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )

            def invoke(arg: Any, timeout: Optional[float] = None, _call: Any = call) -> Any:
                return _call(arg, timeout=timeout, metadata=metadata)

            setattr(self, _snake(method.name), invoke)


class Client:
    """A connection to a Carecast server.

    ``token``: a bearer token (JWT) sent with every call, as the server's authentication expects.
    ``tls``: verify the server over TLS (``root_certificates``: PEM bytes of the CA, default the
    system's). Errors are ``grpc.RpcError`` whose ``details()`` name the field at fault, as the
    server's do.
    """

    def __init__(
        self,
        address: str,
        *,
        token: Optional[str] = None,
        tls: bool = False,
        root_certificates: Optional[bytes] = None,
    ) -> None:
        if tls:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root_certificates))
        else:
            channel = grpc.insecure_channel(address)
        metadata = [("authorization", f"Bearer {token}")] if token else []
        self.channel = channel
        self.scoring = _Service(channel, "ScoringService", metadata)
        self.models = _Service(channel, "ModelService", metadata)

    def score(
        self, model: str, patient_key: str, features: Dict[str, Any], max_contributions: int = 0, timeout: float = 10.0
    ) -> Any:
        """One patient scored and explained (a ``ScoreResponse``)."""
        return self.scoring.score(score_request(model, patient_key, features, max_contributions), timeout)

    def score_batch(self, requests: List[Any], timeout: float = 60.0) -> List[Any]:
        """Many requests in one call; each result is a score or an error of its own."""
        return list(self.scoring.score_batch(message("ScoreBatchRequest", requests=requests), timeout).results)

    def score_stream(self, requests: Iterable[Any], timeout: float = 60.0) -> List[Any]:
        """Requests streamed in, results streamed back in order."""
        return list(self.scoring.score_stream(iter(requests), timeout))

    def list_models(self) -> List[Any]:
        return list(self.models.list_models(message("ListModelsRequest")).models)

    def close(self) -> None:
        self.channel.close()
