"""The replica's V2 gRPC service: readiness, validation as status codes, typed contents, drain, workers, metrics."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
import pytest

from inference.app import ReplicaApp
from inference.config import ReplicaConfig
from inference.testing import DEFAULT_MODEL, DEFAULT_MODEL_REPO, free_port, replica_process
from inference.v2grpc import grpc_predict_v2_pb2 as pb
from inference.v2grpc import grpc_predict_v2_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(120)


class InProcessReplica:
    """A ReplicaApp with its gRPC service on an event loop in a thread; warm-up waits for ``gate``."""

    def __init__(self, **config: object) -> None:
        self.gate = threading.Event()
        self.port = free_port()
        self.app = ReplicaApp(
            ReplicaConfig(str(DEFAULT_MODEL_REPO), DEFAULT_MODEL, grpc_port=self.port, warmup_rounds=1, **config),  # type: ignore[arg-type]
            warmup_gate=self.gate,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> InProcessReplica:
        self.thread.start()
        self._run(self.app.startup())
        self._run(self.app.start_grpc())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        return self

    def _run(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)  # type: ignore[arg-type]

    def warm(self) -> None:
        self.gate.set()
        deadline = time.monotonic() + 30
        while not self.app.ready:
            assert time.monotonic() < deadline, "warm-up did not finish"
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self.channel.close()
        self._run(self.app.stop_grpc(1.0))
        self._run(self.app.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def replica() -> Iterator[InProcessReplica]:
    with InProcessReplica(max_body_bytes=100_000) as running:
        running.warm()
        yield running


def infer_request(x: np.ndarray, **fields: object) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=DEFAULT_MODEL, **fields)  # type: ignore[arg-type]
    request.inputs.add(name="input", datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(x.astype("<f4").tobytes())
    return request


def expect_error(call: object, code: grpc.StatusCode, *words: str) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    error = raised.value
    assert error.code() is code, error.details()  # type: ignore[attr-defined]
    details: str = error.details()  # type: ignore[attr-defined]
    assert all(word in details for word in words), details
    return details


def test_not_ready_until_warmed_then_ready() -> None:
    with InProcessReplica() as cold:
        assert cold.stub.ServerLive(pb.ServerLiveRequest()).live
        assert not cold.stub.ServerReady(pb.ServerReadyRequest()).ready
        assert not cold.stub.ModelReady(pb.ModelReadyRequest(name=DEFAULT_MODEL)).ready
        x = np.zeros((1, 64), np.float32)
        expect_error(lambda: cold.stub.ModelInfer(infer_request(x)), grpc.StatusCode.UNAVAILABLE, "warming up")
        cold.warm()
        assert cold.stub.ServerReady(pb.ServerReadyRequest()).ready
        assert cold.stub.ModelInfer(infer_request(x)).outputs


def test_raw_contents_in_raw_contents_out_equal_onnxruntime(replica: InProcessReplica) -> None:
    x = np.random.default_rng(1).random((5, 64)).astype(np.float32)
    response = replica.stub.ModelInfer(infer_request(x, id="r-1"))
    assert response.id == "r-1" and response.model_version == "1"
    expected = dict(zip(["label", "probabilities"], replica.app.model.session.run(None, {"input": x}), strict=True))  # type: ignore[union-attr]
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        array = np.frombuffer(raw, dtype=expected[output.name].dtype.newbyteorder("<")).reshape(output.shape)
        np.testing.assert_array_equal(array, expected[output.name])


def test_typed_contents_in_typed_contents_out(replica: InProcessReplica) -> None:
    x = np.random.default_rng(2).random((2, 64)).astype(np.float32)
    request = pb.ModelInferRequest(model_name=DEFAULT_MODEL, outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="label")])
    request.inputs.add(name="input", datatype="FP32", shape=[2, 64]).contents.fp32_contents.extend(x.ravel().tolist())
    response = replica.stub.ModelInfer(request)
    assert not response.raw_output_contents and [o.name for o in response.outputs] == ["label"]
    label = replica.app.model.session.run(["label"], {"input": x})[0]  # type: ignore[union-attr]
    assert list(response.outputs[0].contents.int64_contents) == label.tolist()


@pytest.mark.parametrize(
    ("mutate", "code", "words"),
    [
        (lambda r: setattr(r, "model_name", "nope"), grpc.StatusCode.NOT_FOUND, ("unknown model 'nope'",)),
        (lambda r: setattr(r, "model_version", "7"), grpc.StatusCode.NOT_FOUND, ("no version '7'",)),
        (lambda r: setattr(r.inputs[0], "datatype", "INT32"), grpc.StatusCode.INVALID_ARGUMENT, ("input 'input'", "INT32")),
        (lambda r: r.inputs[0].shape.__setitem__(1, 63), grpc.StatusCode.INVALID_ARGUMENT, ("input 'input'", "shape")),
        (lambda r: setattr(r.inputs[0], "name", "x"), grpc.StatusCode.INVALID_ARGUMENT, ("unexpected input 'x'",)),
        (lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 12), grpc.StatusCode.INVALID_ARGUMENT, ("input 'input'", "12 bytes")),
        (lambda r: r.raw_input_contents.append(b"x"), grpc.StatusCode.INVALID_ARGUMENT, ("2 entries for 1 inputs",)),
        (lambda r: r.outputs.add(name="nope"), grpc.StatusCode.INVALID_ARGUMENT, ("unknown output(s) ['nope']",)),
        (lambda r: r.raw_input_contents.__setitem__(0, np.full((1, 64), np.nan, "<f4").tobytes()), grpc.StatusCode.INVALID_ARGUMENT, ("input 'input'", "finite")),
    ],
    ids=["model", "version", "datatype", "shape", "name", "raw-size", "raw-count", "output", "nan"],
)
def test_bad_requests_get_a_status_code_and_a_message_naming_the_problem(
    replica: InProcessReplica, mutate: object, code: grpc.StatusCode, words: tuple[str, ...]
) -> None:
    request = infer_request(np.zeros((1, 64), np.float32))
    mutate(request)  # type: ignore[operator]
    expect_error(lambda: replica.stub.ModelInfer(request), code, *words)


def test_typed_contents_of_the_wrong_field_are_refused(replica: InProcessReplica) -> None:
    request = pb.ModelInferRequest(model_name=DEFAULT_MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=[1, 64]).contents.int_contents.extend([1] * 64)
    expect_error(lambda: replica.stub.ModelInfer(request), grpc.StatusCode.INVALID_ARGUMENT, "fp32_contents", "int_contents")


def test_a_message_over_the_body_limit_is_resource_exhausted(replica: InProcessReplica) -> None:
    x = np.zeros((1000, 64), np.float32)  # 256 KB > 100 KB
    expect_error(lambda: replica.stub.ModelInfer(infer_request(x)), grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_metadata_and_unknown_model_metadata(replica: InProcessReplica) -> None:
    metadata = replica.stub.ModelMetadata(pb.ModelMetadataRequest(name=DEFAULT_MODEL))
    assert metadata.platform == "onnxruntime_onnx" and metadata.inputs[0].shape == [-1, 64]
    expect_error(lambda: replica.stub.ModelMetadata(pb.ModelMetadataRequest(name="nope")), grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: replica.stub.ModelReady(pb.ModelReadyRequest(name="nope")), grpc.StatusCode.NOT_FOUND)
    assert replica.stub.ServerMetadata(pb.ServerMetadataRequest()).name == "prewarm"


def test_metrics_count_grpc_requests_under_their_protocol(replica: InProcessReplica) -> None:
    before = dict(replica.app.metrics.grpc_requests)
    replica.stub.ModelInfer(infer_request(np.zeros((1, 64), np.float32)))
    with pytest.raises(grpc.RpcError):
        replica.stub.ModelInfer(pb.ModelInferRequest(model_name="nope"))
    text = replica.app.metrics.exposition(True).decode()
    after = replica.app.metrics.grpc_requests
    assert after[200] == before.get(200, 0) + 1 and after[404] == before.get(404, 0) + 1
    assert f'prewarm_replica_requests_total{{endpoint="infer",protocol="grpc",status="200"}} {after[200]:.1f}' in text
    assert 'prewarm_replica_request_duration_seconds_count{protocol="grpc"}' in text


# --- real processes -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_lets_grpc_calls_in_flight_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    grpc_port = free_port()
    args = ["--grpc-port", str(grpc_port), "--service-time-ms", "800"]
    with replica_process(tmp_path, extra_args=args) as replica:
        replica.wait_ready()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            call: Future[pb.ModelInferResponse] = stub.ModelInfer.future(infer_request(np.zeros((1, 64), np.float32)))
            deadline = time.monotonic() + 10
            while "in_flight_requests 1.0" not in httpx.get(replica.url + "/metrics").text:
                assert time.monotonic() < deadline, "the call never arrived"
                time.sleep(0.02)
            replica.process.send_signal(signal.SIGTERM)
            assert call.result(timeout=10).outputs  # finished although the replica was told to stop
        assert replica.process.wait(timeout=20) == 0


@pytest.mark.slow
def test_two_workers_share_the_grpc_port(tmp_path: Path) -> None:
    grpc_port = free_port()
    with replica_process(tmp_path, extra_args=["--workers", "2", "--grpc-port", str(grpc_port)]) as replica:
        replica.wait_ready()
        workers = psutil.Process(replica.process.pid).children()
        listening = {
            worker.pid
            for worker in workers
            for connection in worker.net_connections("tcp")
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == grpc_port
        }
        assert listening == {worker.pid for worker in workers} and len(listening) == 2
        for _ in range(6):  # a new connection each time: the kernel spreads them over the workers
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                assert pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(np.zeros((1, 64), np.float32))).outputs
        text = httpx.get(replica.url + "/metrics").text
        deadline = time.monotonic() + 5
        while 'protocol="grpc",status="200"} 6.0' not in text:  # summed over both workers' snapshots
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
            text = httpx.get(replica.url + "/metrics").text


@pytest.mark.slow
def test_a_second_replica_on_a_taken_grpc_port_fails_to_start(tmp_path: Path) -> None:
    grpc_port = free_port()
    with replica_process(tmp_path, extra_args=["--grpc-port", str(grpc_port)]) as first:
        first.wait_ready()
        for workers in ("1", "2"):
            with replica_process(tmp_path, extra_args=["--grpc-port", str(grpc_port), "--workers", workers]) as second:
                assert second.process.wait(timeout=30) != 0
                assert "gRPC" in second.log()
