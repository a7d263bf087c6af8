"""The gateway's V2 gRPC front: each RPC goes to the least busy ready replica's gRPC port, per request.

A ``grpc.aio`` server with one generic handler: RPCs of ``inference.GRPCInferenceService`` are forwarded as raw
bytes (never decoded) over one HTTP/2 channel per replica, picked by the gateway's balancer for each call, so the
in-flight limit, queueing and least-outstanding choice are shared with HTTP requests. ServerLive and ServerReady
are answered here (ready: some replica can take gRPC requests), like the gateway's HTTP health routes. A replica
that answers UNAVAILABLE (it is draining, or the connection broke) has the call retried on another one, as HTTP
requests are; every other status is relayed to the client with its message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from inference.gateway.balancer import NoReplicaReady, QueueFull, QueueTimeout
from inference.v2grpc import grpc_predict_v2_pb2 as pb

if TYPE_CHECKING:
    from inference.gateway.server import Gateway

log = logging.getLogger(__name__)

SERVICE = "/inference.GRPCInferenceService/"
_DROPPED_METADATA = ("grpc-", ":")  # reserved by gRPC itself; set again by the channel
_DROPPED_NAMES = frozenset({"user-agent", "te", "content-type", "host"})


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: GrpcProxy) -> None:
        self.proxy = proxy

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method == SERVICE + "ServerLive":
            return _unary(self.proxy.server_live)
        if method == SERVICE + "ServerReady":
            return _unary(self.proxy.server_ready)
        if method.startswith(SERVICE):
            return _unary(functools.partial(self.proxy.forward, method))  # a coroutine function, as grpc.aio needs
        return None  # UNIMPLEMENTED


def _unary(behaviour: Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(behaviour)  # no (de)serialisers: bytes in, bytes out


class GrpcProxy:
    """Serves the V2 gRPC service for ``gateway`` on host:port."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        config = self.gateway.config
        self.server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", config.max_body_bytes),
                ("grpc.max_send_message_length", -1),
            ]
        )
        self.server.add_generic_rpc_handlers((_Handler(self),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(f"cannot listen for gRPC on {address}: {error}") from None
        await self.server.start()
        log.info("gateway for %s serving gRPC on %s:%d", config.deployment, host, self.port)
        return self.port

    async def stop(self, grace_s: float) -> None:
        if self.server is not None:
            await self.server.stop(grace_s)

    async def server_live(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return pb.ServerLiveResponse(live=True).SerializeToString()

    async def server_ready(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        ready = any(u.grpc_port is not None for u in self.gateway.balancer.routable())
        return pb.ServerReadyResponse(ready=ready).SerializeToString()

    async def forward(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """One RPC to the least busy replica with a gRPC port; retried elsewhere while replicas answer UNAVAILABLE."""
        gateway = self.gateway
        config, stats, balancer = gateway.config, gateway.stats, gateway.balancer
        stats.record_arrival()
        started = time.perf_counter()
        metadata = _forwarded_metadata(context.invocation_metadata())
        tried: list[str] = []
        code, details = grpc.StatusCode.UNAVAILABLE, "no replica serves gRPC"
        try:
            for attempt in range(config.max_attempts):
                try:
                    upstream = await gateway.acquire(exclude=tried, need_grpc=True)
                except (NoReplicaReady, QueueFull, QueueTimeout) as error:
                    stats.rejected_total += 1
                    code, details = grpc.StatusCode.UNAVAILABLE, str(error)
                    break
                remaining = context.time_remaining()
                try:
                    call = upstream.grpc_channel().unary_unary(method)
                    response: bytes = await call(
                        request,
                        metadata=metadata,
                        timeout=config.request_timeout_s if remaining is None else remaining,
                    )
                    stats.record_completion(time.perf_counter() - started, False)
                    return response
                except grpc.aio.AioRpcError as error:
                    code, details = error.code(), error.details() or ""
                    if code is not grpc.StatusCode.UNAVAILABLE or attempt + 1 == config.max_attempts:
                        break
                    tried.append(upstream.replica_id)
                    stats.retries_total += 1
                    log.info("gRPC call to %s failed (%s); retrying elsewhere", upstream.replica_id, details)
                finally:
                    balancer.release(upstream)
        except asyncio.CancelledError:
            stats.record_completion(time.perf_counter() - started, True)
            raise
        server_side = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
        stats.record_completion(time.perf_counter() - started, server_side)
        await context.abort(code, details)
        raise AssertionError("unreachable: abort() raises")


def _forwarded_metadata(metadata: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (key, value)
        for key, value in metadata or ()
        if not key.startswith(_DROPPED_METADATA) and key not in _DROPPED_NAMES
    )
