"""HTTP/1.1 keep-alive connections from the gateway to one replica, with just enough parsing to relay responses."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

log = logging.getLogger(__name__)


class UpstreamError(Exception):
    """A request to a replica failed; ``retryable`` when inference may safely run again elsewhere."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.keep_alive = True
        self._future: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        future = self._future
        if future is not None and not future.done():
            future.set_exception(UpstreamError(f"connection lost mid-request: {exc or 'closed by replica'}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamError(f"bad response from replica: {error}", retryable=False))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        future = self._future
        self.keep_alive = self.parser.should_keep_alive()
        if future is not None and not future.done():
            future.set_result(
                UpstreamResponse(self.parser.get_status_code(), self._headers, b"".join(self._body))
            )
        self._future = None
        self._headers = []
        self._body = []

    def _fail(self, error: UpstreamError) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_exception(error)
        self.abort()

    def send(self, request: bytes) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._future = loop.create_future()
        self.transport.write(request)
        return self._future

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _expire(future: asyncio.Future[UpstreamResponse], replica_id: str, timeout_s: float) -> None:
    if not future.done():
        future.set_exception(UpstreamError(f"replica {replica_id} did not answer within {timeout_s:g} s"))


@dataclass
class Upstream:
    """A replica the gateway may route to: its address, health, in-flight count and idle connections."""

    replica_id: str
    host: str
    port: int
    pid: int | None = None
    grpc_port: int | None = None  # its V2 gRPC service, if it has one
    healthy: bool = True
    draining: bool = False  # the backend is stopping it: no new requests, in-flight ones finish
    in_flight: int = 0
    _idle: list[_UpstreamConnection] = field(default_factory=list)
    _busy: set[_UpstreamConnection] = field(default_factory=set)
    _grpc: Any = None  # grpc.aio.Channel, opened on first use

    def grpc_channel(self) -> Any:
        """The HTTP/2 channel to this replica's gRPC port (one per replica; calls are multiplexed on it)."""
        if self._grpc is None:
            import grpc

            self._grpc = grpc.aio.insecure_channel(
                f"{self.host}:{self.grpc_port}", options=[("grpc.max_receive_message_length", -1)]
            )
        return self._grpc

    @property
    def routable(self) -> bool:
        return self.healthy and not self.draining

    async def request(self, payload: bytes, connect_timeout_s: float, timeout_s: float) -> UpstreamResponse:
        """Send one serialised request and return the response; raises UpstreamError."""
        connection = self._idle.pop() if self._idle else None
        if connection is None or connection.closed:
            connection = await self._acquire(connect_timeout_s)
        self._busy.add(connection)
        future = connection.send(payload)
        # A timer instead of asyncio.wait_for: this is the hot path and wait_for costs a task-like wrapper.
        timer = future.get_loop().call_later(timeout_s, _expire, future, self.replica_id, timeout_s)
        try:
            response = await future
        except (UpstreamError, asyncio.CancelledError):
            connection.abort()
            raise
        finally:
            timer.cancel()
            self._busy.discard(connection)
        if connection.keep_alive and not connection.closed and not self.draining:
            self._idle.append(connection)
        else:
            connection.abort()
        return response

    async def _acquire(self, connect_timeout_s: float) -> _UpstreamConnection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(_UpstreamConnection, self.host, self.port), connect_timeout_s
            )
        except (OSError, TimeoutError) as error:
            raise UpstreamError(f"cannot connect to replica {self.replica_id}: {error}") from None
        return protocol

    def abort_all(self) -> None:
        """Drop every connection; requests in flight on them fail with a retryable error."""
        for connection in [*self._idle, *self._busy]:
            connection.abort()
        self._idle.clear()
        if self._grpc is not None:  # its calls fail with UNAVAILABLE, which the gRPC proxy retries elsewhere
            channel, self._grpc = self._grpc, None
            asyncio.get_running_loop().create_task(channel.close())

    def close_idle(self) -> None:
        for connection in self._idle:
            connection.abort()
        self._idle.clear()
