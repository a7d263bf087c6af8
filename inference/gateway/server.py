"""The gateway: one port serving the V2 inference API, forwarding each request to a ready replica.

Raw asyncio + httptools on both sides (no framework) because the gateway sits on every request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import cast

import httptools

from inference.gateway.activator import (
    ActivationTimeout,
    Activator,
    ActivatorConfig,
    ActivatorFull,
    http_notifier,
)
from inference.gateway.balancer import Balancer, NoReplicaReady, QueueFull, QueueTimeout
from inference.gateway.collector import BatchWriter, ReplicaUsageSampler, second_to_points
from inference.gateway.grpcproxy import GrpcProxy
from inference.gateway.health import probe_ready
from inference.gateway.registry import ReplicaRecord, read_registry, write_gateway_load
from inference.gateway.stats import ReplicaGauges, TrafficStats, render_activator, render_prometheus
from inference.gateway.upstream import Upstream, UpstreamError, UpstreamResponse
from inference.httplimits import BODY, HEAD, IDLE, HttpLimits, RequestRejected, rejection

log = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host", b"te", b"upgrade",
     b"proxy-connection", b"trailer"}
)  # fmt: skip


@dataclass(frozen=True)
class GatewayConfig:
    """How the gateway balances, queues, checks health and reports (see docs/gateway.md)."""

    deployment: str = "default"
    host: str = "127.0.0.1"
    port: int = 8000
    registry_dir: Path | None = None  # where the backend publishes replicas.json; None: static upstreams only
    static_upstreams: tuple[
        str, ...
    ] = ()  # "host:port" or "host:port/grpc_port": replicas not managed by a backend (benchmarks, tests)
    max_in_flight_per_replica: int = 64
    queue_capacity: int = 1024
    queue_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 0.5
    max_attempts: int = 3
    health_interval_s: float = 0.25
    health_timeout_s: float = 0.5
    registry_poll_s: float = 0.2
    metrics_flush_interval_s: float = 5.0
    retry_after_s: int = 1
    max_body_bytes: int = 4 * 1024 * 1024  # the replicas' limit (PREWARM_REPLICA_MAX_BODY_BYTES): larger gets 413 here
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    grpc_port: int | None = None  # serve the V2 gRPC service here too (0: any free port); None: no gRPC
    grpc_host: str | None = None  # where gRPC listens; None: ``host`` (differs behind nginx, which carries HTTP only)
    activator: ActivatorConfig | None = None  # hold requests while no replica is ready (activator.py); None: 503
    activator_poll_s: float = 0.01  # how often the registry is read while requests are held


_LOCAL_PATHS = frozenset({b"/metrics", b"/v2/health/live", b"/v2/health/ready"})  # answered by the gateway itself


@dataclass
class _Request:
    method: bytes
    url: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    http_minor: int = 1
    too_large: bool = False
    rejected: RequestRejected | None = None  # not a request: the error to answer in its turn, then close


@dataclass
class _Response:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


def _local_response(status: int, body: bytes, content_type: bytes = b"application/json") -> _Response:
    return _Response(status, [(b"content-type", content_type)], body)


def _error_body(message: str) -> bytes:
    return b'{"error":"' + message.replace('"', "'").encode() + b'"}'


class Gateway:
    """Routes requests to replicas; owns the balancer, health checks, registry polling and metrics."""

    def __init__(self, config: GatewayConfig, batch_writer: BatchWriter | None = None) -> None:
        self.config = config
        self.balancer = Balancer(
            config.max_in_flight_per_replica, config.queue_capacity, config.queue_timeout_s
        )
        self.stats = TrafficStats()
        self.batch_writer = batch_writer
        self._usage_sampler = ReplicaUsageSampler()
        self._last_usage: dict[str, tuple[float, float]] = {}
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._registry_mtime: float | None = None
        self._published_load: dict[str, int] | None = None
        self._active_connections: set[_ClientConnection] = set()
        self._flushing_now = False
        self.in_flight_override: int | None = None  # set when nginx carries the traffic (see nginx.py)
        self.grpc_proxy: GrpcProxy | None = None
        self.activator: Activator | None = None
        if config.activator is not None:
            notify = (
                http_notifier(config.activator.controller_url, config.deployment, config.activator.token)
                if config.activator.controller_url
                else None
            )
            self.activator = Activator(config.activator, notify)
        for index, address in enumerate(config.static_upstreams):
            address, _, grpc_port = address.partition("/")
            host, _, port = address.rpartition(":")
            self.balancer.upstreams[f"static-{index}"] = Upstream(
                f"static-{index}", host, int(port), grpc_port=int(grpc_port) if grpc_port else None
            )

    # lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ClientConnection(self),
            self.config.host,
            self.config.port,
            backlog=2048,
            reuse_address=True,
        )
        if self.config.grpc_port is not None:
            self.grpc_proxy = GrpcProxy(self)
            await self.grpc_proxy.start(self.config.grpc_host or self.config.host, self.config.grpc_port)
        if self.config.registry_dir is not None:
            self.poll_registry()
            self._tasks.append(asyncio.create_task(self._registry_loop()))
        self._tasks.append(asyncio.create_task(self._health_loop()))
        self._tasks.append(asyncio.create_task(self._second_loop()))
        self._tasks.append(asyncio.create_task(self._timeouts_loop()))
        if self.batch_writer is not None:
            self._tasks.append(asyncio.create_task(self._flush_loop()))
        log.info("gateway for %s listening on %s", self.config.deployment, self.address)

    @property
    def grpc_address(self) -> str | None:
        """host:port of the gRPC service, if it is on."""
        host = self.config.grpc_host or self.config.host
        return None if self.grpc_proxy is None else f"{host}:{self.grpc_proxy.port}"

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (bounded), flush metrics."""
        if self._server is not None:
            self._server.close()
        grpc_drained = (
            asyncio.create_task(self.grpc_proxy.stop(drain_timeout_s)) if self.grpc_proxy is not None else None
        )
        deadline = time.monotonic() + drain_timeout_s
        while self.balancer.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for connection in list(self._active_connections):
            connection.close()
        if grpc_drained is not None:
            await grpc_drained
        if self.activator is not None:
            await self.activator.stop()
        for upstream in self.balancer.upstreams.values():
            upstream.abort_all()
        self._close_second(float(int(time.time())))  # the partial second: no request goes uncounted
        if self.batch_writer is not None:
            await asyncio.to_thread(self.batch_writer.flush)

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # request path
    async def handle(self, request: _Request) -> _Response:
        path = request.url.split(b"?", 1)[0]
        if path in _LOCAL_PATHS:
            if request.method not in (b"GET", b"HEAD"):
                response = _local_response(405, _error_body(f"{path.decode()} answers GET and HEAD only"))
                response.headers.append((b"allow", b"GET, HEAD"))
                return response
            if path == b"/metrics":
                return _local_response(200, self.render_metrics().encode(), b"text/plain; version=0.0.4")
            if path == b"/v2/health/live":
                return _local_response(200, b"")
            return _local_response(200 if self.balancer.routable() else 503, b"")
        if request.too_large:
            return _local_response(413, _error_body(f"body exceeds the limit of {self.config.max_body_bytes} bytes"))
        return await self.forward(request)

    async def forward(self, request: _Request) -> _Response:
        """Send the request to the least busy ready replica, retrying elsewhere on a connection failure."""
        stats = self.stats
        stats.record_arrival()
        started = time.perf_counter()
        payload = _serialise_request(request)
        tried: list[str] = []
        response: _Response | None = None
        for attempt in range(self.config.max_attempts):
            try:
                upstream = await self.acquire(exclude=tried)
            except (NoReplicaReady, QueueFull, QueueTimeout) as error:
                stats.rejected_total += 1
                response = _local_response(503, _error_body(str(error)))
                response.headers.append((b"retry-after", str(self.config.retry_after_s).encode()))
                break
            try:
                upstream_response = await upstream.request(
                    payload, self.config.connect_timeout_s, self.config.request_timeout_s
                )
            except UpstreamError as error:
                tried.append(upstream.replica_id)
                self._on_upstream_failure(upstream, error)
                if not error.retryable or attempt + 1 == self.config.max_attempts:
                    response = _local_response(502, _error_body(f"replica failed: {error}"))
                    break
                stats.retries_total += 1
                continue
            finally:
                self.balancer.release(upstream)
            response = _relay(upstream_response)
            break
        assert response is not None
        stats.record_completion(time.perf_counter() - started, response.status >= 500)
        return response

    async def acquire(self, exclude: Collection[str] = (), need_grpc: bool = False) -> Upstream:
        """A slot on a replica (Balancer.acquire); with no replica ready, the activator holds the request (bounded)
        until one is, instead of NoReplicaReady at once."""
        while True:
            try:
                return await self.balancer.acquire(exclude, need_grpc)
            except NoReplicaReady:
                if self.activator is None:
                    raise
            try:
                await self.activator.hold(lambda: self._any_routable(need_grpc))
            except (ActivatorFull, ActivationTimeout) as error:
                raise NoReplicaReady(str(error)) from None

    def _any_routable(self, need_grpc: bool) -> bool:
        return any(u.routable and (u.grpc_port or not need_grpc) for u in self.balancer.upstreams.values())

    def _on_upstream_failure(self, upstream: Upstream, error: UpstreamError) -> None:
        message = str(error)
        log.info("request to %s failed: %s", upstream.replica_id, message)
        if message.startswith("cannot connect") or "did not answer" in message:
            self.eject(upstream, message)

    # health
    def eject(self, upstream: Upstream, reason: str) -> None:
        """Stop routing to a replica and fail over the requests it holds (they are retried elsewhere)."""
        if not upstream.healthy:
            return
        upstream.healthy = False
        upstream.abort_all()
        log.warning(
            "ejected replica %s (%s:%d): %s", upstream.replica_id, upstream.host, upstream.port, reason
        )
        if not self.balancer.routable():
            self.balancer.wake_all()

    def restore(self, upstream: Upstream) -> None:
        if upstream.healthy:
            return
        upstream.healthy = True
        log.info("replica %s is healthy again", upstream.replica_id)
        self.balancer.wake()
        if self.activator is not None:
            self.activator.replica_ready()

    async def _health_loop(self) -> None:
        while True:
            upstreams = [u for u in self.balancer.upstreams.values() if not u.draining]
            if upstreams:
                results = await asyncio.gather(
                    *(probe_ready(u.host, u.port, self.config.health_timeout_s) for u in upstreams)
                )
                for upstream, (ready, reason) in zip(upstreams, results, strict=True):
                    if ready:
                        self.restore(upstream)
                    else:
                        self.eject(upstream, reason)
            await asyncio.sleep(self.config.health_interval_s)

    # registry
    async def _registry_loop(self) -> None:
        """Read the registry every ``registry_poll_s``, every ``activator_poll_s`` while requests are held."""
        while True:
            held = self.activator is not None and self.activator.held > 0
            await asyncio.sleep(self.config.activator_poll_s if held else self.config.registry_poll_s)
            try:
                self.poll_registry()
            except Exception:
                log.exception("registry poll failed")

    def poll_registry(self) -> None:
        """Follow the backend's replicas.json: add ready replicas, drain stopping ones, drop the rest."""
        assert self.config.registry_dir is not None
        path = self.config.registry_dir / "replicas.json"
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime is not None and mtime != self._registry_mtime:
            snapshot = read_registry(path)
            if snapshot is not None:
                self._registry_mtime = mtime
                self.apply_replicas(snapshot.replicas)
        self._remove_drained()
        self._publish_load()

    def apply_replicas(self, records: tuple[ReplicaRecord, ...]) -> None:
        upstreams = self.balancer.upstreams
        seen: set[str] = set()
        for record in records:
            seen.add(record.replica_id)
            existing = upstreams.get(record.replica_id)
            if record.state == "ready":
                address = (record.host, record.port, record.grpc_port)
                if existing is None or (existing.host, existing.port, existing.grpc_port) != address:
                    upstreams[record.replica_id] = Upstream(
                        record.replica_id, record.host, record.port, record.pid, record.grpc_port
                    )
                    log.info("routing to replica %s at %s", record.replica_id, record.address)
                    self.balancer.wake()
                    if self.activator is not None:
                        self.activator.replica_ready()
                else:
                    existing.draining = False
            elif existing is not None:
                if record.state == "failed":
                    self.eject(existing, "backend reports it failed")
                self._drain(existing)
        for replica_id, upstream in list(upstreams.items()):
            if replica_id not in seen and not replica_id.startswith("static-"):
                self._drain(upstream)

    def _drain(self, upstream: Upstream) -> None:
        if not upstream.draining:
            upstream.draining = True
            upstream.close_idle()
            log.info("draining replica %s", upstream.replica_id)

    def _remove_drained(self) -> None:
        upstreams = self.balancer.upstreams
        for replica_id, upstream in list(upstreams.items()):
            if upstream.draining and upstream.in_flight == 0:
                upstream.abort_all()
                del upstreams[replica_id]
        if not self.balancer.routable():
            self.balancer.wake_all()

    def _publish_load(self) -> None:
        assert self.config.registry_dir is not None
        load = {replica_id: u.in_flight for replica_id, u in self.balancer.upstreams.items()}
        if load != self._published_load or int(time.time() * 5) % 5 == 0:
            write_gateway_load(self.config.registry_dir / "gateway.json", load)
            self._published_load = load

    # metrics
    @property
    def current_in_flight(self) -> int:
        return self.balancer.in_flight if self.in_flight_override is None else self.in_flight_override

    def render_metrics(self) -> str:
        gauges = [
            ReplicaGauges(
                u.replica_id, u.routable, u.in_flight, *self._last_usage.get(u.replica_id, (None, None))
            )
            for u in self.balancer.upstreams.values()
        ]
        text = render_prometheus(
            self.config.deployment, self.stats, self.balancer.queue_length, self.current_in_flight,
            len(self.balancer.routable()), gauges,
        )  # fmt: skip
        if self.activator is not None:
            text += render_activator(self.config.deployment, self.activator)
        return text

    async def _second_loop(self) -> None:
        """At each wall-clock second boundary, summarise the second that ended."""
        while True:
            now = time.time()
            await asyncio.sleep(1.0 - (now % 1.0) + 0.001)
            self._close_second(float(int(time.time()) - 1))

    def _close_second(self, second_start: float) -> None:
        """Summarise the second that started at ``second_start`` and queue its samples for the store."""
        routable = self.balancer.routable()
        in_flight = self.current_in_flight
        summary = self.stats.close_second(second_start, self.balancer.queue_length, in_flight, len(routable))
        pids = {u.replica_id: u.pid for u in routable if u.pid is not None}
        usage = self._usage_sampler.sample(pids)
        self._last_usage = {u.replica_id: (u.cpu_percent, u.memory_bytes) for u in usage}
        if self.batch_writer is not None:
            self.batch_writer.add(second_to_points(self.config.deployment, summary, usage))
            if self.activator is not None and self.activator.held and not self._flushing_now:
                # requests are held: the controller should see their second now, not at the next flush
                self._flushing_now = True
                task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.batch_writer.flush))
                task.add_done_callback(self._flushed_while_holding)

    def _flushed_while_holding(self, _task: object) -> None:
        """The held requests' second is in the store: push again so the controller decides with it."""
        self._flushing_now = False
        if self.activator is not None:
            self.activator.nudge()

    async def _timeouts_loop(self) -> None:
        """Slow clients get 408 and idle keep-alive connections are closed (inference.httplimits)."""
        while True:
            await asyncio.sleep(min(1.0, self.config.http_limits.header_timeout_s / 4))
            now = time.monotonic()
            for connection in list(self._active_connections):
                connection.check_timeouts(now)

    async def _flush_loop(self) -> None:
        assert self.batch_writer is not None
        while True:
            await asyncio.sleep(self.config.metrics_flush_interval_s)
            await asyncio.to_thread(self.batch_writer.flush)


def _serialise_request(request: _Request) -> bytes:
    method = b"GET" if request.method == b"HEAD" else request.method  # the head of the GET answer is relayed
    lines = [method + b" " + request.url + b" HTTP/1.1", b"host: replica"]
    lines.extend(name + b": " + value for name, value in request.headers if name.lower() not in _HOP_BY_HOP)
    lines.append(b"content-length: " + str(len(request.body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + request.body


def _relay(upstream_response: UpstreamResponse) -> _Response:
    headers = [(n, v) for n, v in upstream_response.headers if n.lower() not in _HOP_BY_HOP]
    return _Response(upstream_response.status, headers, upstream_response.body)


def _serialise_response(response: _Response, keep_alive: bool, head_only: bool = False) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b"Unknown"
    lines = [b"HTTP/1.1 " + str(response.status).encode() + b" " + reason]
    lines.extend(name + b": " + value for name, value in response.headers)
    lines.append(b"content-length: " + str(len(response.body)).encode())
    if not keep_alive:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else response.body)


class _ClientConnection(asyncio.Protocol):
    """One client connection: parses requests within the HTTP limits, answers them in order (pipelining-safe)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.limits = gateway.config.http_limits
        self.max_body_bytes = gateway.config.max_body_bytes
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._pending: deque[_Request] = deque()
        self._busy = False
        self._closing = False
        self._paused: set[str] = set()  # why reading is paused: "write", "pipeline", "failed"
        self._write_paused_since = 0.0
        # where the parser is and since when, for the timeouts: a connection is idle (keep-alive timeout) until a
        # request's first byte, then reading its head (head timeout), then its body (body timeout)
        self.phase, self.since = IDLE, time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.gateway._active_connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.gateway._active_connections.discard(self)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        """The client does not read its answers: stop reading its requests until it does."""
        self._pause("write")
        self._write_paused_since = time.monotonic()

    def resume_writing(self) -> None:
        self._resume("write")

    def _pause(self, reason: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(reason)

    def _resume(self, reason: str) -> None:
        self._paused.discard(reason)
        if not self._paused and self.transport is not None and not self._closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(rejection(error) or RequestRejected(400, f"malformed HTTP request: {error}"))

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._body = []
        self._size = 0
        self._too_large = False
        self.phase, self.since = HEAD, time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line_bytes:
            self.limits.check_url(self._url)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._headers.append((name, value))
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self.limits.max_header_bytes or len(self._headers) > self.limits.max_headers:
            self.limits.check_headers(len(self._headers), self._header_bytes)
        if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
            self._too_large = True

    def on_headers_complete(self) -> None:
        self.phase, self.since = BODY, time.monotonic()
        if self.transport is not None and (b"expect", b"100-continue") in self._headers and not self._too_large:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._size += len(body)
        if self._size > self.max_body_bytes:
            self._too_large = True
            self._body = []
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self.phase, self.since = IDLE, time.monotonic()
        request = _Request(
            self.parser.get_method(),
            self._url,
            self._headers,
            b"".join(self._body),
            self.parser.should_keep_alive(),
            too_large=self._too_large,
        )
        self._pending.append(request)
        if len(self._pending) >= self.limits.max_pipelined:
            self._pause("pipeline")
        if not self._busy:
            self._next()

    def _fail(self, rejected: RequestRejected) -> None:
        """The client broke the protocol or a limit: answer after the responses it is owed, then close."""
        if "failed" in self._paused:
            return
        self._pause("failed")  # the parser is unusable now; read nothing more
        self._pending.append(_Request(b"", b"", [], b"", False, rejected=rejected))
        if not self._busy:
            self._next()

    def check_timeouts(self, now: float) -> None:
        """Answer 408 to a client too slow with its head or body, close a keep-alive connection idle too long."""
        if self.transport is None or self._closing:
            return
        if "write" in self._paused and now - self._write_paused_since > self.limits.keepalive_timeout_s:
            log.info("closing a connection whose client has not read its responses for a while")
            self.transport.abort()
            return
        if self._busy or self._pending or self._paused:
            return  # the gateway has work for this connection (or stopped reading it): not the client's delay
        rejected = self.limits.expired(self.phase, self.since, now)
        if rejected is not None:
            if rejected.status:
                log.info("closing a connection: %s", rejected)
            self._fail(rejected)

    def _next(self) -> None:
        if self._closing or not self._pending:
            self._busy = False
            self.since = time.monotonic()  # the client's time starts once its answers are out (keep-alive from here)
            return
        self._busy = True
        request = self._pending.popleft()
        rejected = request.rejected
        if rejected is not None:
            if rejected.status and self.transport is not None:
                response = _local_response(rejected.status, _error_body(str(rejected)))
                self.transport.write(_serialise_response(response, keep_alive=False))
            self.close()
            return
        task = asyncio.get_running_loop().create_task(self.gateway.handle(request))
        task.add_done_callback(lambda done: self._respond(done, request))

    def _respond(self, task: asyncio.Task[_Response], request: _Request) -> None:
        if task.cancelled() or self.transport is None or self._closing:
            self._busy = False
            return
        error = task.exception()
        if error is not None:
            log.error("gateway error: %r", error)
            response = _local_response(500, _error_body("gateway error"))
        else:
            response = task.result()
        self.transport.write(_serialise_response(response, request.keep_alive, request.method == b"HEAD"))
        if not request.keep_alive:
            self.close()
            return
        if "pipeline" in self._paused and len(self._pending) < self.limits.max_pipelined:
            self._resume("pipeline")
        self._next()
