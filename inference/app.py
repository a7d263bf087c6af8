"""The replica's ASGI application.

``ReplicaApp`` answers ``POST /v2/models/<its model>/infer`` on a lean raw-ASGI path (bytes in, orjson out, no
per-request framework objects) and hands every other request to a FastAPI app that documents the whole API
(OpenAPI at ``/openapi.json``) and serves metadata, health and metrics. Both paths share ``infer_body``.

Readiness is honest: the server accepts connections at once, loads the session and runs warm-up inferences in a
background thread, and answers 503 on ``/v2/health/ready`` and on infer until that is done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from inference.batching import Batcher
from inference.config import ReplicaConfig
from inference.metrics import PUBLISH_INTERVAL_S, ReplicaMetrics
from inference.model import LoadedModel, ModelNotFoundError, load_model, warm_up
from inference.protocol import (
    InferRequest,
    InvalidRequestError,
    check_batch_dimension,
    encode_infer_response,
    error_body,
    parse_infer_request,
)

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]


def response_headers(json_length: int | None) -> list[tuple[bytes, bytes]]:
    """Headers of an infer response: JSON, or JSON followed by binary outputs (the binary tensor extension)."""
    if json_length is None:
        return JSON_HEADERS
    return [(b"content-type", b"application/octet-stream"), (b"inference-header-content-length", b"%d" % json_length)]


class ClientDisconnectedError(Exception):
    """The client went away before its body arrived."""


def process_start_ts() -> float:
    """Epoch seconds at which this process started."""
    import psutil

    return float(psutil.Process().create_time())


class ReplicaApp:
    """One model, one worker process: state, metrics and the ASGI entry point."""

    def __init__(self, config: ReplicaConfig, warmup_gate: threading.Event | None = None) -> None:
        self.config = config
        self.model: LoadedModel | None = None
        self.ready = False
        self.failed: str | None = None
        self.started_ts = config.process_start_ts or process_start_ts()
        self.infer_path = f"/v2/models/{config.model}/infer"
        self.metrics = ReplicaMetrics(config.model)
        self.batcher: Batcher | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._warmup_gate = warmup_gate  # tests hold warm-up back with this
        self._warmup_task: asyncio.Task[None] | None = None
        self._replica_ready_cached = False
        self.rows_observe = self.metrics.observe_rows
        self._publisher: asyncio.Task[None] | None = None
        self._grpc_server: Any = None  # grpc.aio.Server when the gRPC service is on
        from inference.api import build_api

        self.api = build_api(self)

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def startup(self) -> None:
        """Start warming in the background; the server accepts connections meanwhile (and answers 503)."""
        if self.model is None and self._warmup_task is None:
            self._warmup_task = asyncio.get_running_loop().create_task(self._warm(), name="warm-up")
        if self.metrics.metrics_dir and self._publisher is None:
            self._publisher = asyncio.get_running_loop().create_task(
                self._publish(), name="metrics-publisher"
            )

    async def start_grpc(self) -> None:
        """Serve the V2 gRPC service on ``config.grpc_port`` (if set) from this worker's event loop."""
        config = self.config
        if config.grpc_port and self._grpc_server is None:
            from inference.v2grpc.service import start_grpc_server

            self._grpc_server = await start_grpc_server(self, config.host, config.grpc_port, config.workers > 1)
            logger.info("worker %d serving gRPC on %s:%d", os.getpid(), config.host, config.grpc_port)

    async def stop_grpc(self, grace_s: float) -> None:
        """Refuse new RPCs at once, let those in progress finish for up to ``grace_s``."""
        if self._grpc_server is not None:
            await self._grpc_server.stop(grace_s)
            self._grpc_server = None

    async def _publish(self) -> None:
        """With several workers: share this worker's numbers with the one answering the next scrape."""
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL_S)
            try:
                self.metrics.publish()
            except OSError:
                logger.warning("could not publish metrics to %s", self.metrics.metrics_dir, exc_info=True)

    def load_and_warm(self) -> LoadedModel:
        """Blocking: create the session and run the warm-up inferences (in a worker thread at startup)."""
        config = self.config
        if self._warmup_gate is not None:
            self._warmup_gate.wait()
        model = load_model(Path(config.model_repo), config.model, config.intra_op_threads)
        warmup_s = warm_up(model, config.warmup_batch_sizes(), config.warmup_rounds)
        self.metrics.model_load_s = model.load_s
        self.metrics.warmup_s = warmup_s
        return model

    async def _warm(self) -> None:
        try:
            model = await asyncio.to_thread(self.load_and_warm)
        except Exception as error:  # a replica that cannot load stays unready and says why
            self.failed = f"{type(error).__name__}: {error}"
            logger.exception("model %s failed to load; replica stays unready", self.config.model)
            return
        self.activate(model)

    def activate(self, model: LoadedModel) -> None:
        """Serve ``model`` from now on: start the batcher (if configured), export startup time, turn ready."""
        config = self.config
        self.model = model
        if config.batching and model.batchable:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")
            self.batcher = Batcher(
                model.run,
                config.batch_max_size,
                config.batch_max_wait_ms / 1000.0,
                executor=self._executor,
                on_batch=self.metrics.observe_rows,
                on_depth_change=self.metrics.add_queue_depth,
            )
            self.batcher.start()
        self.ready = True
        startup_s = time.time() - self.started_ts
        self.metrics.startup_s = startup_s
        self.metrics.ready = 1
        self.metrics.publish()
        if config.ready_dir:
            Path(config.ready_dir, str(os.getpid())).touch()
        logger.info(
            "replica ready: model=%s pid=%d startup_s=%.3f load_s=%.3f batching=%s",
            config.model,
            os.getpid(),
            startup_s,
            model.load_s,
            self.batcher is not None,
        )

    async def shutdown(self) -> None:
        self.ready = False
        self._replica_ready_cached = False
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()
        if self.batcher is not None:
            await self.batcher.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self.config.ready_dir:
            Path(self.config.ready_dir, str(os.getpid())).unlink(missing_ok=True)
        if self._publisher is not None:
            self._publisher.cancel()
        self.metrics.ready = 0
        self.metrics.publish(final=True)
        logger.info("replica worker %d stopped", os.getpid())

    def replica_ready(self) -> bool:
        """This worker is warmed and, with several workers, every worker is."""
        if not self.ready:
            return False
        if self._replica_ready_cached or not self.config.ready_dir:
            return True
        try:
            self._replica_ready_cached = len(os.listdir(self.config.ready_dir)) >= self.config.workers
        except OSError:
            return False
        return self._replica_ready_cached

    # --- the hot path --------------------------------------------------------------------------------------
    def not_ready_message(self) -> str:
        reason = f"failed to load: {self.failed}" if self.failed else "warming up"
        return f"model {self.config.model!r} is not ready ({reason})"

    def _not_ready(self) -> tuple[int, bytes]:
        return 503, error_body(self.not_ready_message())

    def infer_sync(self, body: bytes, header_length: int | None = None) -> tuple[int, bytes, int | None]:
        """Serve one V2 infer body without batching, on the calling thread: (HTTP status, body, JSON length).

        The JSON length is None unless binary outputs follow the JSON (send it as Inference-Header-Content-Length).
        """
        model = self.model
        if not self.ready or model is None:
            return (*self._not_ready(), None)
        try:
            request = parse_infer_request(body, model.inputs, model.outputs, header_length)
            outputs = model.run(request.inputs)
            self.rows_observe(request.rows)
            return 200, *encode_infer_response(
                model.name, request.id, outputs, model.outputs, request.outputs, request.binary_outputs
            )
        except InvalidRequestError as error:
            return error.status, error_body(str(error)), None
        except Exception as error:
            logger.exception("inference failed")
            return 500, error_body(f"inference failed: {type(error).__name__}: {error}"), None

    @property
    def service_time_s(self) -> float:
        """Extra wall time per inference (``--service-time-ms``), 0 normally."""
        return self.config.service_time_ms / 1000.0

    async def infer_body(self, body: bytes, header_length: int | None = None) -> tuple[int, bytes, int | None]:
        """Serve one V2 infer body for this replica's model (through the batcher when batching is on)."""
        if self.batcher is None and not self.service_time_s:
            return self.infer_sync(body, header_length)
        try:
            model, request, outputs = await self.run_request(
                lambda model: parse_infer_request(body, model.inputs, model.outputs, header_length)
            )
            return 200, *encode_infer_response(
                model.name, request.id, outputs, model.outputs, request.outputs, request.binary_outputs
            )
        except InvalidRequestError as error:
            return error.status, error_body(str(error)), None
        except Exception as error:
            logger.exception("inference failed")
            return 500, error_body(f"inference failed: {type(error).__name__}: {error}"), None

    async def run_request(
        self, parse: Callable[[LoadedModel], InferRequest]
    ) -> tuple[LoadedModel, InferRequest, dict[str, np.ndarray]]:
        """Validate a request with ``parse`` and run it as every protocol does: through the batcher when batching is
        on, then ``--service-time-ms`` of waiting. Raises InvalidRequestError (status 503 while not ready)."""
        model = self.model
        if not self.ready or model is None:
            raise InvalidRequestError(self.not_ready_message(), 503)
        request = parse(model)
        if self.batcher is not None:
            check_batch_dimension(request)
            outputs = await self.batcher.submit(request.inputs, request.rows)
        else:
            outputs = model.run(request.inputs)
            self.rows_observe(request.rows)
        if self.service_time_s > 0:
            # Emulates a heavier model for demos and tests: the request holds the replica without using CPU.
            await asyncio.sleep(self.service_time_s)
        return model, request, outputs

    def record(self, status: int, started: float) -> None:
        """Count one infer request and its latency (``started`` from ``time.perf_counter``)."""
        self.metrics.record(status, time.perf_counter() - started)

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, int | None]:
        """The body (413 past the limit) and the binary extension's JSON header length, if any."""
        limit = self.config.max_body_bytes
        header_length: int | None = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                if value.isdigit() and int(value) > limit:
                    raise InvalidRequestError(f"body of {int(value)} bytes exceeds the limit of {limit}", 413)
            elif key == b"inference-header-content-length":
                if not value.isdigit():
                    raise InvalidRequestError("Inference-Header-Content-Length must be a number of bytes")
                header_length = int(value)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise InvalidRequestError(f"body exceeds the limit of {limit} bytes", 413)
            return body, header_length
        chunks, size = [body], len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnectedError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise InvalidRequestError(f"body exceeds the limit of {limit} bytes", 413)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), header_length

    async def _infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        started = time.perf_counter()
        metrics.in_flight += 1
        try:
            json_length: int | None = None
            try:
                body, header_length = await self._read_body(scope, receive)
            except InvalidRequestError as error:
                status, payload = error.status, error_body(str(error))
            except ClientDisconnectedError:
                return
            else:
                status, payload, json_length = await self.infer_body(body, header_length)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [*response_headers(json_length), (b"content-length", str(len(payload)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": payload})
        finally:
            metrics.in_flight -= 1
        self.record(status, started)

    # --- ASGI ----------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.infer_path and scope["method"] == "POST":
            await self._infer(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.api(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await self.start_grpc()  # under uvicorn; the built-in server starts it itself
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop_grpc(self.config.graceful_timeout_s)
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app_from_env() -> ReplicaApp:
    """Factory for uvicorn's worker processes (config comes from the environment the CLI set)."""
    from prewarm.cli import configure_logging
    from prewarm.settings import get_settings

    configure_logging(get_settings().log_level)  # spawned workers start with logging unconfigured
    return ReplicaApp(ReplicaConfig.from_env())


def check_model_exists(config: ReplicaConfig) -> None:
    """Fail fast in the CLI, before any server starts, when the model is not in the repository."""
    from inference.model import model_path

    model_path(Path(config.model_repo), config.model)


__all__ = ["ModelNotFoundError", "ReplicaApp", "check_model_exists", "create_app_from_env"]
