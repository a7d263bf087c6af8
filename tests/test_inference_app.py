"""The replica app in-process: readiness, routing, errors, limits and metrics (real model, real session)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from inference.app import ReplicaApp
from inference.config import ReplicaConfig
from inference.model import load_model
from inference.protocol import encode_binary_request
from inference.testing import DEFAULT_MODEL, DEFAULT_MODEL_REPO, digits_body

INFER = f"/v2/models/{DEFAULT_MODEL}/infer"


def config(**overrides: object) -> ReplicaConfig:
    values: dict[str, object] = {"model_repo": str(DEFAULT_MODEL_REPO), "model": DEFAULT_MODEL, **overrides}
    return ReplicaConfig(**values)  # type: ignore[arg-type]


def wait_ready(client: TestClient, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "replica never became ready"
        time.sleep(0.01)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(ReplicaApp(config(max_body_bytes=20_000))) as test_client:
        wait_ready(test_client)
        yield test_client


def test_ready_is_503_and_infer_refused_until_warm_up_finishes() -> None:
    gate = threading.Event()
    with TestClient(ReplicaApp(config(), warmup_gate=gate)) as test_client:
        assert test_client.get("/v2/health/ready").status_code == 503
        assert test_client.get(f"/v2/models/{DEFAULT_MODEL}/ready").status_code == 503
        refused = test_client.post(INFER, content=digits_body())
        assert refused.status_code == 503 and "warming up" in refused.json()["error"]
        assert test_client.get("/v2/health/live").status_code == 200
        gate.set()
        wait_ready(test_client)
        assert test_client.post(INFER, content=digits_body()).status_code == 200


def test_replica_with_missing_model_stays_unready_and_says_why() -> None:
    with TestClient(ReplicaApp(config(model="no_such_model"))) as test_client:
        time.sleep(0.2)
        assert test_client.get("/v2/health/ready").status_code == 503
        refused = test_client.post("/v2/models/no_such_model/infer", content=digits_body())
        assert refused.status_code == 503 and "no_such_model" in refused.json()["error"]


def test_infer_returns_label_and_probabilities(client: TestClient) -> None:
    response = client.post(INFER, content=digits_body(rows=3))
    assert response.status_code == 200
    outputs = {tensor["name"]: tensor for tensor in response.json()["outputs"]}
    assert outputs["label"]["shape"] == [3] and outputs["label"]["datatype"] == "INT64"
    assert outputs["probabilities"]["shape"] == [3, 10]
    assert abs(sum(outputs["probabilities"]["data"][:10]) - 1.0) < 1e-4


def test_request_id_is_echoed(client: TestClient) -> None:
    document = orjson.loads(digits_body())
    document["id"] = "req-7"
    assert client.post(INFER, content=orjson.dumps(document)).json()["id"] == "req-7"


def test_metadata_lists_inputs_and_outputs_with_datatypes_and_shapes(client: TestClient) -> None:
    metadata = client.get(f"/v2/models/{DEFAULT_MODEL}").json()
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]} in metadata["outputs"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/v2/models/other/infer"), ("get", "/v2/models/other"), ("get", "/v2/models/other/ready")],
)
def test_unknown_model_is_404_naming_the_served_one(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, content=digits_body() if method == "post" else None)
    assert response.status_code == 404 and DEFAULT_MODEL in response.json()["error"]


def test_bad_input_gets_400_and_the_server_keeps_serving(client: TestClient) -> None:
    bad = client.post(
        INFER,
        content=b'{"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1,2,3]}]}',
    )
    assert bad.status_code == 400 and "'input'" in bad.json()["error"]
    assert client.post(INFER, content=b"not json").status_code == 400
    assert client.post(INFER, content=digits_body()).status_code == 200


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post(INFER, content=digits_body(rows=100))  # ~40 KB over a 20 KB limit
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_body_over_the_limit_is_413_without_content_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        payload = digits_body(rows=100)
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    assert client.post(INFER, content=chunks()).status_code == 413


def test_metrics_count_requests_by_status_and_export_startup(client: TestClient) -> None:
    client.post(INFER, content=digits_body())
    client.post(INFER, content=b"{}")
    text = client.get("/metrics").text
    assert 'prewarm_replica_requests_total{endpoint="infer",protocol="http",status="200"} 1.0' in text
    assert 'prewarm_replica_requests_total{endpoint="infer",protocol="http",status="400"} 1.0' in text
    for name in (
        "prewarm_replica_request_duration_seconds_bucket",
        "prewarm_replica_in_flight_requests",
        "prewarm_replica_queue_depth",
        "prewarm_replica_batch_size_bucket",
        "prewarm_replica_model_load_seconds",
        "prewarm_replica_warmup_seconds",
        "prewarm_replica_startup_seconds",
        "prewarm_replica_cpu_seconds_total",
        "prewarm_replica_memory_bytes",
    ):
        assert name in text, name
    assert 'prewarm_replica_ready{model="digits_mlp"} 1.0' in text


def test_binary_data_extension_gives_the_same_answer_as_json(client: TestClient) -> None:
    document = orjson.loads(digits_body(rows=2))
    array = np.asarray(document["inputs"][0]["data"], dtype=np.float32).reshape(2, 64)
    raw, header_length = encode_binary_request({"input": array}, {"input": "FP32"})
    binary = client.post(INFER, content=raw, headers={"Inference-Header-Content-Length": str(header_length)})
    assert binary.status_code == 200
    assert binary.json()["outputs"] == client.post(INFER, content=digits_body(rows=2)).json()["outputs"]


def test_config_json_pins_dynamic_dimensions(tmp_path: Path) -> None:
    (tmp_path / "pinned").mkdir()
    shutil.copy(DEFAULT_MODEL_REPO / DEFAULT_MODEL / "model.onnx", tmp_path / "pinned" / "model.onnx")
    (tmp_path / "pinned" / "config.json").write_text('{"inputs": {"input": {"shape": [2, 64]}}}')
    model = load_model(tmp_path, "pinned")
    assert model.inputs[0].shape == (2, 64)
