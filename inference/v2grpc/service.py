"""The replica's V2 gRPC service: the same model, readiness, validation and metrics as its HTTP API.

Runs as a ``grpc.aio`` server on the worker's event loop beside the HTTP server, so a ModelInfer goes through the
same ``ReplicaApp.run_request`` (batcher, service time) as an HTTP infer. Errors become gRPC status codes with the
same messages as HTTP: 400 INVALID_ARGUMENT, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 500 INTERNAL.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import grpc

from inference.protocol import InvalidRequestError
from inference.v2grpc import grpc_predict_v2_pb2 as pb
from inference.v2grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from inference.v2grpc.convert import (
    encode_grpc_response,
    model_metadata,
    parse_grpc_request,
    wants_typed_outputs,
)

if TYPE_CHECKING:
    from inference.app import ReplicaApp

logger = logging.getLogger(__name__)

STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    500: grpc.StatusCode.INTERNAL,
}


class ReplicaInferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """inference.GRPCInferenceService for one ReplicaApp."""

    def __init__(self, app: ReplicaApp) -> None:
        self.app = app

    def _check_model(self, name: str, version: str) -> None:
        served = self.app.config.model
        if name != served:
            raise InvalidRequestError(f"unknown model {name!r}; this replica serves {served!r}", 404)
        if version not in ("", "1"):
            raise InvalidRequestError(f"model {served!r} has no version {version!r}; it has version '1'", 404)

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.app.replica_ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        try:
            self._check_model(request.name, request.version)
        except InvalidRequestError as error:
            await context.abort(STATUS_CODES[error.status], str(error))
        return pb.ModelReadyResponse(ready=self.app.replica_ready())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="prewarm", version="1", extensions=[])

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        model = self.app.model
        try:
            self._check_model(request.name, request.version)
            if model is None:
                raise InvalidRequestError(self.app.not_ready_message(), 503)
        except InvalidRequestError as error:
            await context.abort(STATUS_CODES[error.status], str(error))
        assert model is not None  # abort() raised otherwise
        return model_metadata(model)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        app = self.app
        started = time.perf_counter()
        app.metrics.in_flight += 1
        status, message = 200, ""
        try:
            self._check_model(request.model_name, request.model_version)
            model, parsed, outputs = await app.run_request(lambda model: parse_grpc_request(request, model))
            response = encode_grpc_response(model, parsed, outputs, wants_typed_outputs(request, model))
        except InvalidRequestError as error:
            status, message = error.status, str(error)
        except Exception as error:
            logger.exception("inference failed")
            status, message = 500, f"inference failed: {type(error).__name__}: {error}"
        finally:
            app.metrics.in_flight -= 1
            app.metrics.record_grpc(status, time.perf_counter() - started)
        if status != 200:
            await context.abort(STATUS_CODES.get(status, grpc.StatusCode.INTERNAL), message)
        return response


async def start_grpc_server(app: ReplicaApp, host: str, port: int, reuse_port: bool) -> grpc.aio.Server:
    """Serve ``app`` over gRPC on host:port; ``reuse_port`` lets the replica's worker processes share the port."""
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", app.config.max_body_bytes),
            ("grpc.max_send_message_length", -1),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(ReplicaInferenceService(app), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"cannot listen for gRPC on {address}: {error}") from None
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await server.start()
    return server
