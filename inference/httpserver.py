"""A small HTTP/1.1 server for one replica: httptools parsing on uvloop, the infer route answered in the callback.

Why: with a model this small, uvicorn's per-request machinery (a task, ASGI message dicts, a response cycle object)
costs more CPU than onnxruntime. Here ``POST /v2/models/<model>/infer`` without batching is parsed, run and answered
inside ``data_received`` with no coroutine at all; every other request (and infer with batching on) runs the same
ASGI app uvicorn would run, buffered (bodies are bounded, responses are small JSON), with every header it sets.
Keep-alive, pipelining (answered in order, at most ``max_pipelined`` waiting before the server stops reading),
``Expect: 100-continue``, HEAD (answered as GET, without the body), a body size limit (413), the limits and timeouts
of ``inference.httplimits`` (414, 431, 408) and graceful shutdown (stop accepting, finish in-flight requests, close
idle connections) are handled; chunked request bodies are decoded by httptools, which also refuses smuggling
attempts (400, connection closed).

Several workers share one listening socket that the supervisor binds and hands to each worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

from inference.app import ReplicaApp, response_headers
from inference.config import CONFIG_ENV, ReplicaConfig
from inference.httplimits import BODY, HEAD, IDLE, RequestRejected, rejection, with_head

logger = logging.getLogger(__name__)

LISTEN_FD_ENV = "_PREWARM_REPLICA_LISTEN_FD"
_OK_JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


_JSON = [(b"content-type", b"application/json")]
_SERVER_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"connection"})  # framing is the server's


def _head(status: int, length: int, keep_alive: bool, headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
            *(b"%s: %s\r\n" % (name, value) for name, value in headers),
            b"content-length: %d\r\n" % length,
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
        )
    )


@dataclass
class _Request:
    method: bytes
    url: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    too_large: bool
    http_version: str
    header_length: int | None = None
    rejected: RequestRejected | None = None  # not a request: the error to answer in its turn, then close


@dataclass
class ServerState:
    """What the server's shutdown needs to know: open connections and whether we are draining."""

    connections: set[HttpProtocol] = field(default_factory=set)
    draining: bool = False


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, app: ReplicaApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.limit = app.config.max_body_bytes
        self.limits = app.config.http_limits
        self.infer_path = app.infer_path.encode()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Request] = deque()
        self.busy = False  # an ASGI request of this connection is running
        self.paused: set[str] = set()  # why reading is paused: "write" (client not reading), "pipeline" (queue full)
        # where the parser is and since when, for the timeouts: a connection is idle (keep-alive timeout) until a
        # request's first byte, then reading its head (head timeout), then its body (body timeout)
        self.phase, self.since = IDLE, time.monotonic()
        self.write_paused_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.header_length: int | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.queue.clear()
        self.state.connections.discard(self)

    def pause_writing(self) -> None:
        """The client does not read its answers: stop reading its requests until it does."""
        self._pause("write")
        self.write_paused_since = time.monotonic()

    def resume_writing(self) -> None:
        self._resume("write")

    def _pause(self, reason: str) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused.add(reason)

    def _resume(self, reason: str) -> None:
        self.paused.discard(reason)
        if not self.paused and self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(RequestRejected(400, "upgrades are not supported"))
        except httptools.HttpParserError as error:
            self._fail(rejection(error) or RequestRejected(400, f"malformed HTTP request: {error}"))

    # --- httptools callbacks -------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self.phase, self.since = HEAD, time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_request_line_bytes:
            self.limits.check_url(self.url)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > self.limits.max_header_bytes or len(self.headers) > self.limits.max_headers:
            self.limits.check_headers(len(self.headers), self.header_bytes)
        if name == b"content-length" and value.isdigit() and int(value) > self.limit:
            self.too_large = True
        elif name == b"inference-header-content-length" and value.isdigit():
            self.header_length = int(value)

    def on_headers_complete(self) -> None:
        self.phase, self.since = BODY, time.monotonic()
        if self.transport is not None and (b"expect", b"100-continue") in self.headers and not self.too_large:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.too_large:
            return
        self.size += len(body)
        if self.size > self.limit:
            self.too_large = True
            self.chunks = []
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        app = self.app
        self.phase, self.since = IDLE, time.monotonic()
        if (
            self.url == self.infer_path
            and not self.busy
            and not self.queue
            and not self.too_large
            and app.batcher is None
            and not app.service_time_s
            and parser.get_method() == b"POST"
        ):  # the hot path: answered right here
            started = time.perf_counter()
            status, payload, json_length = app.infer_sync(body, self.header_length)
            self._write(
                status, payload, parser.should_keep_alive(), None if json_length is None else response_headers(json_length)
            )
            app.metrics.record(status, time.perf_counter() - started)
            return
        request = _Request(
            parser.get_method(),
            self.url,
            self.headers,
            body,
            parser.should_keep_alive(),
            self.too_large,
            parser.get_http_version(),
            self.header_length,
        )
        if self.busy or self.queue:
            self.queue.append(request)
            if len(self.queue) >= self.limits.max_pipelined:
                self._pause("pipeline")
        else:
            self._handle(request)

    # --- request handling ----------------------------------------------------------------------------------
    def _handle(self, request: _Request) -> None:
        app = self.app
        if request.rejected is not None:
            self._reject(request.rejected)
            return
        if (
            request.method == b"POST"
            and request.url == self.infer_path
            and app.batcher is None
            and not app.service_time_s
        ):
            started = time.perf_counter()
            json_length = None
            if request.too_large:
                status, payload = 413, _too_large(self.limit)
            else:
                status, payload, json_length = app.infer_sync(request.body, request.header_length)
            self._write(
                status, payload, request.keep_alive, None if json_length is None else response_headers(json_length)
            )
            app.record(status, started)
            return
        if request.too_large:
            self._write(413, _too_large(self.limit), request.keep_alive, head_only=request.method == b"HEAD")
            return
        self.busy = True
        asyncio.get_running_loop().create_task(self._asgi(request))

    def _write(
        self,
        status: int,
        payload: bytes,
        keep_alive: bool,
        headers: list[tuple[bytes, bytes]] | None = None,
        head_only: bool = False,
    ) -> None:
        """Send one response; ``headers`` None means JSON; ``head_only`` (HEAD) sends the head alone."""
        transport = self.transport
        if transport is None:
            return
        keep_alive = keep_alive and not self.state.draining
        if status == 200 and keep_alive and headers is None and not head_only:
            transport.write(b"%s%d\r\n\r\n%s" % (_OK_JSON_HEAD, len(payload), payload))
            return
        head = _head(status, len(payload), keep_alive, _JSON if headers is None else headers)
        transport.write(head if head_only else head + payload)
        if not keep_alive:
            transport.close()
            self.transport = None

    def _fail(self, rejected: RequestRejected) -> None:
        """The client broke the protocol or a limit: answer after the responses it is owed, then close."""
        if "failed" in self.paused:
            return
        self._pause("failed")  # the parser is unusable now; read nothing more
        if self.busy or self.queue:
            self.queue.append(_Request(b"", b"", [], b"", False, False, "1.1", rejected=rejected))
        else:
            self._reject(rejected)

    def _reject(self, rejected: RequestRejected) -> None:
        if rejected.status == 0:
            if self.transport is not None:
                self.transport.close()
                self.transport = None
            return
        message = str(rejected).replace('"', "'").encode()
        self._write(rejected.status, b'{"error":"%s"}' % message, keep_alive=False)

    async def _asgi(self, request: _Request) -> None:
        try:
            await self._run_asgi(request)
        finally:
            self.busy = False
            self._after_response()

    def _after_response(self) -> None:
        while self.queue and not self.busy and self.transport is not None:
            self._handle(self.queue.popleft())
        if "pipeline" in self.paused and len(self.queue) < self.limits.max_pipelined:
            self._resume("pipeline")
        if not self.busy and not self.queue:
            self.since = time.monotonic()  # the client's time starts once its answers are out (keep-alive from here)
        if self.state.draining and not self.busy and not self.queue and self.transport is not None:
            self.transport.close()
            self.transport = None

    async def _run_asgi(self, request: _Request) -> None:
        path, _, query = request.url.partition(b"?")
        transport = self.transport
        head_only = request.method == b"HEAD"
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version,
            "method": "GET" if head_only else request.method.decode("ascii"),  # HEAD is GET without the body
            "scheme": "http",
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": request.headers,
            "client": transport.get_extra_info("peername") if transport else None,
            "server": transport.get_extra_info("sockname") if transport else None,
        }
        sent_body = False
        disconnected = asyncio.Event()

        async def receive() -> MutableMapping[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        status = 500
        response_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        complete = False

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, response_headers, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = [
                    (bytes(name).lower(), bytes(value))
                    for name, value in message.get("headers", [])
                    if bytes(name).lower() not in _SERVER_HEADERS
                ]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    complete = True

        try:
            await self.app(scope, receive, send)
        except Exception:
            logger.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            if not complete:
                status, response_headers, chunks = (
                    500,
                    [(b"content-type", b"application/json")],
                    [b'{"error":"internal server error"}'],
                )
        finally:
            disconnected.set()
        payload = b"".join(chunks)
        if status == 405:
            response_headers = [
                (name, with_head(value) if name == b"allow" else value) for name, value in response_headers
            ]
        self._write(status, payload, request.keep_alive, response_headers, head_only)

    def check_timeouts(self, now: float) -> None:
        """Answer 408 to a client too slow with its head or body, close a keep-alive connection idle too long."""
        if self.transport is None:
            return
        if "write" in self.paused and now - self.write_paused_since > self.limits.keepalive_timeout_s:
            logger.info("closing a connection whose client has not read its responses for a while")
            self.transport.abort()
            self.transport = None
            return
        if self.busy or self.queue or self.paused:
            return  # the server has work for this connection (or stopped reading it): not the client's delay
        rejected = self.limits.expired(self.phase, self.since, now)
        if rejected is not None:
            if rejected.status:
                logger.info("closing a connection: %s", rejected)
            self._fail(rejected)

    def shutdown(self) -> None:
        """Draining: close now if idle, else after the request(s) in progress."""
        if not self.busy and not self.queue and self.transport is not None:
            self.transport.close()
            self.transport = None


def _too_large(limit: int) -> bytes:
    return b'{"error":"body exceeds the limit of %d bytes"}' % limit


async def serve_app(app: ReplicaApp, sock: socket.socket) -> None:
    """Serve ``app`` on a listening socket until SIGTERM/SIGINT, then drain and stop."""
    loop = asyncio.get_running_loop()
    state = ServerState()
    server = await loop.create_server(lambda: HttpProtocol(app, state), sock=sock, backlog=4096)
    await app.startup()
    await app.start_grpc()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info("worker %d serving on %s", os.getpid(), sock.getsockname())

    async def close_idle() -> None:
        while True:
            await asyncio.sleep(min(1.0, app.config.header_timeout_s / 4))
            now = time.monotonic()
            for connection in list(state.connections):
                connection.check_timeouts(now)

    sweeper = loop.create_task(close_idle())
    await stop.wait()
    sweeper.cancel()
    logger.info("worker %d draining %d connection(s)", os.getpid(), len(state.connections))
    server.close()
    state.draining = True
    grpc_drained = loop.create_task(app.stop_grpc(app.config.graceful_timeout_s))  # drains alongside HTTP
    for connection in list(state.connections):
        connection.shutdown()
    deadline = time.monotonic() + app.config.graceful_timeout_s
    while state.connections and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for connection in list(state.connections):  # past the grace period
        if connection.transport is not None:
            connection.transport.abort()
    await grpc_drained
    await app.shutdown()


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _run_worker(config: ReplicaConfig, sock: socket.socket) -> None:
    import uvloop

    uvloop.run(serve_app(ReplicaApp(config), sock))


def worker_main() -> int:
    """Entry point of a worker process started by ``serve_workers`` (config and socket from the environment)."""
    from prewarm.cli import configure_logging
    from prewarm.settings import get_settings

    configure_logging(get_settings().log_level)
    config = ReplicaConfig.from_env()
    sock = socket.socket(fileno=int(os.environ[LISTEN_FD_ENV]))
    sock.setblocking(False)
    _run_worker(config, sock)
    return 0


def serve(config: ReplicaConfig) -> int:
    """Run one replica: in this process with one worker, else a supervisor and ``workers`` processes."""
    sock = listening_socket(config.host, config.port)
    if config.workers <= 1:
        try:
            _run_worker(config, sock)
        except OSError as error:
            logger.error("%s", error)
            return 2
        return 0
    try:
        reservation = reserve_grpc_port(config.host, config.grpc_port) if config.grpc_port else None
    except OSError as error:
        logger.error("gRPC port %d is taken: %s", config.grpc_port, error)
        return 2
    try:
        return _supervise(config, sock)
    finally:
        if reservation is not None:
            reservation.close()


def reserve_grpc_port(host: str, port: int) -> socket.socket:
    """Hold the gRPC port for the workers, which each listen on it with SO_REUSEPORT (the kernel spreads new
    connections over them). The port must be free first (a plain bind), so that a second replica given the same
    port fails instead of joining the group; the bound, non-listening socket kept here then keeps it ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, port))
    reservation = socket.socket(family, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind((host, port))
    return reservation


def _supervise(config: ReplicaConfig, sock: socket.socket) -> int:
    env = {**os.environ, CONFIG_ENV: config.to_env(), LISTEN_FD_ENV: str(sock.fileno())}
    command = [
        sys.executable,
        "-c",
        "from inference.httpserver import worker_main; raise SystemExit(worker_main())",
    ]

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, pass_fds=(sock.fileno(),))

    workers = [spawn() for _ in range(config.workers)]
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exit_code = 0
    while True:
        time.sleep(0.1)
        if stopping:
            deadline = time.monotonic() + config.graceful_timeout_s + 5
            for worker in workers:
                try:
                    worker.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    worker.kill()
                    exit_code = 1
            break
        for index, worker in enumerate(workers):
            code = worker.poll()
            if code is not None:
                logger.error("worker %d exited with %s; starting a new one", worker.pid, code)
                if config.ready_dir:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(config.ready_dir, str(worker.pid)))
                workers[index] = spawn()
    sock.close()
    return exit_code
