"""KEDA's external scaler contract served by the controller, driven by a gRPC client built from our proto (which
must match KEDA's published externalscaler.proto), and the keda backend that decides without patching."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from controller import repository
from controller.backends.base import ReplicaBackend
from controller.backends.factory import build_backend
from controller.backends.keda import KedaBackend
from controller.keda import externalscaler_pb2 as pb
from controller.keda import externalscaler_pb2_grpc as pb_grpc
from controller.loop import ReconcileLoop
from controller.loop_inputs import DeploymentRow
from controller.loop_metrics import ControllerMetrics
from controller.sources.store import StoreSource
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.store import MetricsStore, Sample
from tests.controller_support import Controller, free_port, wait_for
from tests.kube_support import NAME, NAMESPACE, ApiServer, api_server

__all__ = ["api_server"]

# KEDA's contract as published in kedacore/keda pkg/scalers/externalscaler/externalscaler.proto:
# message -> {field: (number, type, repeated)}, and the service's methods -> (input, output, server streaming).
KEDA_MESSAGES = {
    "ScaledObjectRef": {"name": (1, "string", False), "namespace": (2, "string", False),
                        "scalerMetadata": (3, "message", True)},
    "IsActiveResponse": {"result": (1, "bool", False)},
    "GetMetricSpecResponse": {"metricSpecs": (1, "message", True)},
    "MetricSpec": {"metricName": (1, "string", False), "targetSize": (2, "int64", False),
                   "targetSizeFloat": (3, "double", False)},
    "GetMetricsRequest": {"scaledObjectRef": (1, "message", False), "metricName": (2, "string", False)},
    "GetMetricsResponse": {"metricValues": (1, "message", True)},
    "MetricValue": {"metricName": (1, "string", False), "metricValue": (2, "int64", False),
                    "metricValueFloat": (3, "double", False)},
}  # fmt: skip
KEDA_METHODS = {
    "IsActive": ("ScaledObjectRef", "IsActiveResponse", False),
    "StreamIsActive": ("ScaledObjectRef", "IsActiveResponse", True),
    "GetMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", False),
    "GetMetrics": ("GetMetricsRequest", "GetMetricsResponse", False),
    "StreamMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", True),
}
TYPE_NAMES = {9: "string", 8: "bool", 3: "int64", 1: "double", 11: "message"}


def test_our_proto_matches_kedas_package_service_messages_and_field_numbers() -> None:
    file = pb.DESCRIPTOR
    assert file.package == "externalscaler"
    for name, fields in KEDA_MESSAGES.items():
        message = file.message_types_by_name[name]
        found = {f.name: (f.number, TYPE_NAMES[f.type], f.is_repeated) for f in message.fields}
        assert found == fields, name
    service = file.services_by_name["ExternalScaler"]
    methods = {
        m.name: (m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods
    }
    assert methods == KEDA_METHODS
    entry = file.message_types_by_name["ScaledObjectRef"].fields_by_name["scalerMetadata"].message_type
    assert entry.GetOptions().map_entry  # map<string, string>


def test_the_committed_modules_are_what_the_proto_generates(tmp_path: Path) -> None:
    from controller.keda import generate

    fresh = generate.generate(tmp_path)
    for name in generate.MODULES:
        committed = (generate.HERE / name).read_text()
        assert _without_versions(fresh[name]) == _without_versions(committed), f"{name}: python -m controller.keda.generate"


def _without_versions(text: str) -> str:  # the generator's own version lines may differ between machines
    return "\n".join(line for line in text.splitlines() if "_VERSION = " not in line and "Protobuf Python Version" not in line)


def _ref(deployment: str, **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name="k8s-name", namespace="serving", scalerMetadata={"deployment": deployment, **metadata})


@pytest.fixture
def keda_controller(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Controller, pb_grpc.ExternalScalerStub]]:
    port = free_port()
    controller = Controller(postgres_url, tmp_path, "keda", PREWARM_KEDA_PORT=str(port))
    controller.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield controller, pb_grpc.ExternalScalerStub(channel)
    finally:
        channel.close()
        controller.stop()


@pytest.mark.slow
def test_keda_gets_prewarms_decision_as_its_metric(
    keda_controller: tuple[Controller, pb_grpc.ExternalScalerStub],
) -> None:
    controller, stub = keda_controller
    controller.post(
        "/api/v1/deployments",
        {"name": "digits", "model": "digits_mlp", "backend": "dry-run", "backend_config": {"initial_replicas": 2},
         "min_replicas": 1, "max_replicas": 4, "policy": {"decision_interval_s": 1, "replica_capacity_rps": 100}},
    )  # fmt: skip
    now = time.time()
    samples = [{"metric": "cpu_percent", "ts": now - i, "value": 140.0} for i in range(60)]
    controller.post("/api/v1/deployments/digits/samples", {"samples": samples})
    wait_for(lambda: controller.get("/api/v1/deployments/digits/status")["desired_replicas"] == 4)

    spec = stub.GetMetricSpec(_ref("digits"), timeout=10).metricSpecs[0]
    assert (spec.metricName, spec.targetSizeFloat, spec.targetSize) == ("prewarm-replicas-digits", 1.0, 1)
    value = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=_ref("digits"), metricName=spec.metricName),
                            timeout=10).metricValues[0]  # fmt: skip
    assert (value.metricValueFloat, value.metricValue) == (4.0, 4)  # the HPA lands on ceil(4 / 1) = 4
    assert stub.IsActive(_ref("digits"), timeout=10).result is True
    stream = stub.StreamIsActive(_ref("digits"), timeout=10)
    assert next(stream).result is True  # the current state at once
    stream.cancel()

    # The forecast as a signal: rps with the planned load per replica as the target (no forecast yet: the count
    # in rps).
    forecast = stub.GetMetricSpec(_ref("digits", mode="forecast"), timeout=10).metricSpecs[0]
    assert forecast.targetSizeFloat == pytest.approx(100 * 0.8)  # capacity x forecast_utilisation
    rps = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=_ref("digits", mode="forecast")), timeout=10)
    assert rps.metricValues[0].metricValueFloat == pytest.approx(4 * 80.0)

    with pytest.raises(grpc.RpcError) as unknown:
        stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=_ref("nope")), timeout=10)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in (unknown.value.details() or "")
    with pytest.raises(grpc.RpcError) as bad:
        stub.GetMetricSpec(_ref("digits", mode="magic"), timeout=10)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "mode" in (bad.value.details() or "")
    with pytest.raises(grpc.RpcError) as streamed:
        next(stub.StreamMetricSpec(_ref("digits"), timeout=10))
    assert streamed.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine_for_url(postgres_url)
    yield engine
    engine.dispose()


def test_the_keda_backend_decides_and_records_but_never_patches(api_server: ApiServer, pg: Engine) -> None:
    with session_factory(pg)() as session:
        repository.create_deployment(
            session, name=NAME, model="resnet", backend="keda",
            backend_config={"namespace": NAMESPACE, "kubeconfig": str(api_server.kubeconfig), "context": "test"},
            min_replicas=1, max_replicas=10, price_per_replica_hour=0, policy=None, author="test",
        )  # fmt: skip
        session.commit()
    now = time.time()
    MetricsStore(pg).insert_samples([Sample(NAME, "cpu_percent", now - i, 140.0) for i in range(60)])
    backends: list[ReplicaBackend] = []

    def factory(row: DeploymentRow) -> ReplicaBackend:
        backend = build_backend(name=row.name, model=row.model, backend=row.backend,
                                backend_config=row.backend_config, min_replicas=1, engine=pg, state_root=Path("/tmp"))  # fmt: skip
        backends.append(backend)
        return backend

    loop = ReconcileLoop(pg, StoreSource(MetricsStore(pg)), backend_factory=factory, state_root=Path("/tmp"),
                         metrics=ControllerMetrics(CollectorRegistry()))  # fmt: skip
    decision = loop.reconcile_once(now)[NAME]
    assert decision.desired == 4  # ceil(2 x 140 / 70) on the mock's 2 ready replicas
    assert isinstance(backends[0], KedaBackend) and backends[0].decided == 4
    assert api_server.cluster.patches() == []  # KEDA's HPA owns spec.replicas
    with session_factory(pg)() as session:
        stored = repository.latest_decision(session, repository.get_deployment(session, NAME).id)
    assert stored is not None and (stored.desired, stored.applied) == (4, True)
    loop.close()
