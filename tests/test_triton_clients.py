"""Triton's own Python clients (tritonclient[http] and [grpc]) against a replica and against the gateway.

Every result is compared with onnxruntime run directly on the same model and inputs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inference.gateway.server import GatewayConfig
from inference.testing import DEFAULT_MODEL, DEFAULT_MODEL_REPO, free_port, replica_process
from tests.gateway_support import running_gateway

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@dataclass(frozen=True)
class Endpoint:
    name: str
    http: str  # host:port
    grpc: str
    replica_urls: tuple[str, ...]  # the replicas behind it (their /metrics)


@pytest.fixture(scope="module", params=["replica", "gateway"])
def endpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    log_dir: Path = tmp_path_factory.mktemp("triton")
    with ExitStack() as stack:
        replicas = []
        for _ in range(1 if request.param == "replica" else 2):
            grpc_port = free_port()
            replica = stack.enter_context(replica_process(log_dir, extra_args=["--grpc-port", str(grpc_port)]))
            replicas.append((replica, grpc_port))
        for replica, _ in replicas:
            replica.wait_ready()
        urls = tuple(replica.url for replica, _ in replicas)
        if request.param == "replica":
            replica, grpc_port = replicas[0]
            yield Endpoint("replica", f"127.0.0.1:{replica.port}", f"127.0.0.1:{grpc_port}", urls)
            return
        upstreams = tuple(f"127.0.0.1:{replica.port}/{grpc_port}" for replica, grpc_port in replicas)
        gateway = stack.enter_context(running_gateway(GatewayConfig(port=0, grpc_port=0, static_upstreams=upstreams)))
        assert gateway.grpc_address is not None
        yield Endpoint("gateway", gateway.address, gateway.grpc_address, urls)


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(DEFAULT_MODEL_REPO / DEFAULT_MODEL / "model.onnx"), providers=["CPUExecutionProvider"])


def expected(session: ort.InferenceSession, x: np.ndarray) -> dict[str, np.ndarray]:
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {"input": x}), strict=True))


def inputs(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((rows, 64)).astype(np.float32)


def test_http_health_and_metadata(endpoint: Endpoint) -> None:
    client = httpclient.InferenceServerClient(endpoint.http)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(DEFAULT_MODEL)
    metadata = client.get_model_metadata(DEFAULT_MODEL)
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert [output["name"] for output in metadata["outputs"]] == ["label", "probabilities"]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


def test_grpc_health_and_metadata(endpoint: Endpoint) -> None:
    client = grpcclient.InferenceServerClient(endpoint.grpc)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(DEFAULT_MODEL)
    metadata = client.get_model_metadata(DEFAULT_MODEL, as_json=True)
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "64"]}]
    assert client.get_server_metadata().name == "prewarm"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-tensors"])
def test_http_infer_equals_onnxruntime(endpoint: Endpoint, session: ort.InferenceSession, binary: bool) -> None:
    client = httpclient.InferenceServerClient(endpoint.http)
    x = inputs(7, seed=3)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("label", "probabilities")]
    result = client.infer(DEFAULT_MODEL, [tensor], outputs=outputs, request_id="abc")
    response = result.get_response()
    assert response["id"] == "abc"
    assert all(("parameters" in output) is binary for output in response["outputs"])
    for name, array in expected(session, x).items():
        np.testing.assert_array_equal(result.as_numpy(name), array)


def test_http_binary_outputs_for_every_output_when_none_is_named(endpoint: Endpoint, session: ort.InferenceSession) -> None:
    client = httpclient.InferenceServerClient(endpoint.http)
    x = inputs(2, seed=4)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(DEFAULT_MODEL, [tensor])  # the client asks binary_data_output: true
    for name, array in expected(session, x).items():
        np.testing.assert_array_equal(result.as_numpy(name), array)


def test_grpc_infer_equals_onnxruntime(endpoint: Endpoint, session: ort.InferenceSession) -> None:
    client = grpcclient.InferenceServerClient(endpoint.grpc)
    for rows, seed in ((1, 5), (16, 6)):
        x = inputs(rows, seed)
        tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(DEFAULT_MODEL, [tensor], request_id=f"g{rows}")
        assert result.get_response().id == f"g{rows}"
        for name, array in expected(session, x).items():
            np.testing.assert_array_equal(result.as_numpy(name), array)


def test_errors_reach_the_clients_with_the_message(endpoint: Endpoint) -> None:
    x = np.zeros((1, 63), np.float32)
    http_tensor = httpclient.InferInput("input", [1, 63], "FP32")
    http_tensor.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="input 'input': shape"):
        httpclient.InferenceServerClient(endpoint.http).infer(DEFAULT_MODEL, [http_tensor])
    grpc_tensor = grpcclient.InferInput("input", [1, 63], "FP32")
    grpc_tensor.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as raised:
        grpcclient.InferenceServerClient(endpoint.grpc).infer(DEFAULT_MODEL, [grpc_tensor])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT" and "input 'input': shape" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        grpcclient.InferenceServerClient(endpoint.grpc).get_model_metadata("nope")
    assert raised.value.status() == "StatusCode.NOT_FOUND"


def test_the_gateway_balances_grpc_per_request_over_one_connection(endpoint: Endpoint) -> None:
    if endpoint.name != "gateway":
        pytest.skip("balancing is the gateway's")

    def grpc_ok(url: str) -> float:
        for line in httpx.get(url + "/metrics").text.splitlines():
            if line.startswith('prewarm_replica_requests_total{endpoint="infer",protocol="grpc",status="200"}'):
                return float(line.split()[-1])
        return 0.0

    before = [grpc_ok(url) for url in endpoint.replica_urls]
    client = grpcclient.InferenceServerClient(endpoint.grpc)  # one channel: one HTTP/2 connection
    x = inputs(1, seed=7)
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    done: list[object] = []
    for _ in range(40):  # several in flight at once, so that least-outstanding sends some to each replica
        client.async_infer(DEFAULT_MODEL, [tensor], callback=lambda result, error: done.append(error or result))
    deadline = time.monotonic() + 30
    while len(done) < 40:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not [item for item in done if isinstance(item, InferenceServerException)]
    served = [grpc_ok(url) - start for url, start in zip(endpoint.replica_urls, before, strict=True)]
    assert sum(served) == 40 and min(served) >= 5, served
