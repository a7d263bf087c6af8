"""HTTP hardening of prewarm's own servers, over raw sockets: the same specification for the replica and the gateway.

Each test runs against a real replica process and against the Python gateway (in this process) in front of one,
both configured with short timeouts and a small body limit through the same PREWARM_* settings a user would set.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from inference.gateway.server import GatewayConfig
from inference.httplimits import HttpLimits
from inference.testing import DEFAULT_MODEL, digits_body, replica_process
from tests.gateway_support import running_gateway

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
INFER = f"/v2/models/{DEFAULT_MODEL}/infer".encode()
LIMITS = HttpLimits(
    max_request_line_bytes=1024,
    max_headers=20,
    max_header_bytes=4096,
    max_pipelined=4,
    header_timeout_s=1.0,
    body_timeout_s=1.0,
    keepalive_timeout_s=3.0,
)
MAX_BODY = 20_000
SLOW_S = 0.3
ENV = {
    "PREWARM_HTTP_MAX_REQUEST_LINE_BYTES": str(LIMITS.max_request_line_bytes),
    "PREWARM_HTTP_MAX_HEADERS": str(LIMITS.max_headers),
    "PREWARM_HTTP_MAX_HEADER_BYTES": str(LIMITS.max_header_bytes),
    "PREWARM_HTTP_MAX_PIPELINED": str(LIMITS.max_pipelined),
    "PREWARM_HTTP_HEADER_TIMEOUT_S": str(LIMITS.header_timeout_s),
    "PREWARM_HTTP_BODY_TIMEOUT_S": str(LIMITS.body_timeout_s),
    "PREWARM_HTTP_KEEPALIVE_TIMEOUT_S": str(LIMITS.keepalive_timeout_s),
    "PREWARM_REPLICA_MAX_BODY_BYTES": str(MAX_BODY),
}


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    slow_port: int  # the same kind of server, whose infer takes SLOW_S (for pipelining)


@contextmanager
def _replica(log_dir: Path, *args: str) -> Iterator[int]:
    with replica_process(log_dir, extra_args=args, env=ENV) as replica:
        replica.wait_ready()
        yield replica.port


@contextmanager
def _gateway(upstream_port: int) -> Iterator[int]:
    config = GatewayConfig(
        port=0, static_upstreams=(f"127.0.0.1:{upstream_port}",), http_limits=LIMITS, max_body_bytes=MAX_BODY
    )
    with running_gateway(config) as gateway:
        yield int(gateway.address.rsplit(":", 1)[1])


@pytest.fixture(scope="module", params=["replica", "gateway"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir = tmp_path_factory.mktemp("hardening")
    with ExitStack() as stack:
        port = stack.enter_context(_replica(log_dir))
        slow = stack.enter_context(_replica(log_dir, "--service-time-ms", str(SLOW_S * 1000)))
        if request.param == "gateway":
            port, slow = stack.enter_context(_gateway(port)), stack.enter_context(_gateway(slow))
        yield Server(request.param, port, slow)


# --- a minimal HTTP/1.1 client over a raw socket --------------------------------------------------------------
@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Reader:
    """Reads responses off one connection (content-length framing; HEAD answers have no body)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self, head_only: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed before a response; got {self.buffer!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers.get(b"content-length", b"0"))
        while len(self.buffer) < length:
            assert self._fill(), "connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status_line.split()[1]), headers, body)

    def closed(self, within_s: float = 5.0) -> bool:
        """True when the server closes the connection (without sending more) within ``within_s``."""
        self.sock.settimeout(within_s)
        try:
            return not self._fill() and not self.buffer
        except ConnectionResetError:
            return True  # closed with our unread bytes in its buffer: the kernel resets instead of a FIN
        except TimeoutError:
            return False


def request(method: bytes, path: bytes, body: bytes = b"", extra: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if body or method == b"POST" else b""
    return b"%s %s HTTP/1.1\r\nHost: t\r\n%s%s\r\n%s" % (method, path, length, extra, body)


def exchange(port: int, raw: bytes, head_only: bool = False) -> tuple[Response, Reader]:
    sock = connect(port)
    sock.sendall(raw)
    reader = Reader(sock)
    return reader.response(head_only), reader


# --- methods -----------------------------------------------------------------------------------------------------
def test_head_is_answered_like_get_without_a_body(server: Server) -> None:
    sock = connect(server.port)
    sock.sendall(request(b"HEAD", b"/v2/health/ready") + request(b"GET", b"/v2/health/ready"))
    reader = Reader(sock)
    head = reader.response(head_only=True)
    get = reader.response()  # parsed right only if the HEAD answer carried no body
    assert head.status == get.status == 200
    assert head.headers[b"content-length"] == get.headers[b"content-length"]
    assert head.headers[b"content-type"] == get.headers[b"content-type"]


def test_head_of_metrics_has_the_length_of_the_get_answer_and_no_body(server: Server) -> None:
    head, reader = exchange(server.port, request(b"HEAD", b"/metrics"), head_only=True)
    assert head.status == 200 and int(head.headers[b"content-length"]) > 100
    assert head.headers[b"content-type"].startswith(b"text/plain")
    reader.sock.sendall(request(b"GET", b"/v2/health/live"))
    assert reader.response().status == 200  # nothing of a body was left on the wire


def test_wrong_method_gets_405_with_allow(server: Server) -> None:
    response, _ = exchange(server.port, request(b"POST", b"/v2/health/ready", b"{}"))
    assert response.status == 405
    assert response.headers[b"allow"] == b"GET, HEAD"


def test_get_on_the_infer_route_gets_405_allowing_post(server: Server) -> None:
    response, _ = exchange(server.port, request(b"GET", INFER))
    assert response.status == 405 and response.headers[b"allow"] == b"POST"


def test_headers_a_handler_sets_reach_the_client(server: Server) -> None:
    response, _ = exchange(server.port, request(b"GET", b"/metrics"))
    assert response.headers[b"content-type"] == b"text/plain; version=0.0.4; charset=utf-8" or (
        server.name == "gateway" and response.headers[b"content-type"].startswith(b"text/plain")
    )
    not_found, _ = exchange(server.port, request(b"GET", b"/v2/models/nope"))
    assert not_found.status == 404 and not_found.headers[b"content-type"] == b"application/json"


# --- size limits ----------------------------------------------------------------------------------------------
def test_a_long_request_target_gets_414_and_the_connection_closes(server: Server) -> None:
    response, reader = exchange(server.port, request(b"GET", b"/v2/health/ready?" + b"x" * 5000))
    assert response.status == 414 and b"request target" in response.body
    assert reader.closed()


def test_a_one_megabyte_url_is_refused_without_reading_it_all(server: Server) -> None:
    sock = connect(server.port)
    reader = Reader(sock)
    raw = b"GET /" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    sent = 0
    while sent < len(raw) and not _readable(sock):
        sock.sendall(raw[sent : sent + 16384])
        sent += 16384
        time.sleep(0.001)
    assert reader.response().status == 414
    assert sent < 200_000  # answered long before the URL's end


def test_too_many_header_fields_get_431(server: Server) -> None:
    fields = b"".join(b"X-Field-%d: v\r\n" % i for i in range(LIMITS.max_headers + 1))
    response, reader = exchange(server.port, request(b"GET", b"/v2/health/ready", extra=fields))
    assert response.status == 431 and b"header fields" in response.body
    assert reader.closed()


def test_header_fields_over_the_byte_limit_get_431(server: Server) -> None:
    fields = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 1000) for i in range(5))
    response, _ = exchange(server.port, request(b"GET", b"/v2/health/ready", extra=fields))
    assert response.status == 431


def test_headers_within_the_limits_are_served(server: Server) -> None:
    fields = b"".join(b"X-Field-%d: %s\r\n" % (i, b"v" * 100) for i in range(LIMITS.max_headers - 2))
    response, _ = exchange(server.port, request(b"POST", INFER, digits_body(), extra=fields))
    assert response.status == 200


def test_a_body_over_the_limit_gets_413(server: Server) -> None:
    response, reader = exchange(server.port, request(b"POST", INFER, digits_body(rows=100)))
    assert response.status == 413 and b"limit" in response.body
    reader.sock.sendall(request(b"POST", INFER, digits_body()))
    assert reader.response().status == 200  # the connection stays usable after a 413


def test_a_chunked_body_over_the_limit_gets_413(server: Server) -> None:
    body = digits_body(rows=100)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 4000]), body[i : i + 4000]) for i in range(0, len(body), 4000))
    raw = b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (INFER, chunks)
    assert exchange(server.port, raw)[0].status == 413


# --- request smuggling ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Content-Length: 5\r\nContent-Length: 5\r\n",
        b"Content-Length: 5\r\nContent-Length: 7\r\n",
        b"Content-Length: 5, 7\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ],
    ids=["cl-te", "te-cl", "cl-cl", "cl-conflict", "cl-list", "te-not-chunked", "te-te"],
)
def test_smuggling_attempts_get_400_and_the_connection_closes(server: Server, fields: bytes) -> None:
    raw = b"POST %s HTTP/1.1\r\nHost: t\r\n%s\r\n0\r\n\r\nGET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n" % (
        INFER,
        fields,
    )
    response, reader = exchange(server.port, raw)
    assert response.status == 400
    assert reader.closed()  # and the smuggled GET was never answered


# --- slow clients -------------------------------------------------------------------------------------------
def test_a_head_sent_too_slowly_gets_408_and_the_connection_closes(server: Server) -> None:
    sock = connect(server.port)
    reader = Reader(sock)
    started = time.monotonic()
    sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\n")
    for i in range(25):  # a header line every 0.2 s, never the end of the head: Slowloris
        if _readable(sock):
            break
        try:
            sock.sendall(b"X-Slow-%d: 1\r\n" % i)
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.2)
    response = reader.response()
    assert response.status == 408 and b"head" in response.body
    assert time.monotonic() - started < LIMITS.header_timeout_s + 2.5
    assert reader.closed()


def test_the_header_timeout_starts_at_a_requests_first_byte_not_when_the_connection_opens(server: Server) -> None:
    sock = connect(server.port)  # a client's pooled connection, opened ahead of its first request
    time.sleep(LIMITS.header_timeout_s + 0.8)  # past the header timeout, within the keep-alive timeout
    sock.sendall(request(b"GET", b"/v2/health/live"))
    assert Reader(sock).response().status == 200


def test_a_connection_that_sends_nothing_is_closed_without_a_response_after_the_keep_alive_timeout(
    server: Server,
) -> None:
    started = time.monotonic()
    reader = Reader(connect(server.port))
    assert reader.closed(within_s=LIMITS.keepalive_timeout_s + 3)  # closed, and no 408 for a request never sent
    assert time.monotonic() - started >= LIMITS.keepalive_timeout_s - 0.1


def test_a_body_sent_too_slowly_gets_408(server: Server) -> None:
    sock = connect(server.port)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{" % INFER)
    started = time.monotonic()
    reader = Reader(sock)
    response = reader.response()
    assert response.status == 408 and b"body" in response.body
    assert LIMITS.body_timeout_s - 0.1 <= time.monotonic() - started < LIMITS.body_timeout_s + 2.5
    assert reader.closed()


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(server: Server) -> None:
    response, reader = exchange(server.port, request(b"GET", b"/v2/health/live"))
    assert response.status == 200
    started = time.monotonic()
    assert reader.closed(within_s=LIMITS.keepalive_timeout_s + 3)
    assert time.monotonic() - started >= LIMITS.keepalive_timeout_s - 0.1


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


# --- pipelining -------------------------------------------------------------------------------------------------
def _unread_bytes(server_port: int, client_port: int) -> int:
    """Bytes the kernel holds for the server's end of this connection that the server has not read (rx_queue)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return int(queues.split(":")[1], 16)
    raise AssertionError("connection not found in /proc/net/tcp")


def test_the_server_stops_reading_past_the_pipelining_bound_then_answers_all_in_order(server: Server) -> None:
    count = 10
    one = request(b"POST", INFER, digits_body())
    sock = connect(server.slow_port)
    client_port = sock.getsockname()[1]
    started = time.monotonic()
    held_at: int | None = None
    for index in range(count):
        sock.sendall(one)
        # Wait for the server to read it; if it leaves it unread for a while, it has stopped reading.
        deadline = time.monotonic() + SLOW_S / 2
        while _unread_bytes(server.slow_port, client_port) and time.monotonic() < deadline:
            time.sleep(0.002)
        if _unread_bytes(server.slow_port, client_port):
            held_at = index
            break
    # Each infer takes SLOW_S: the server took one to serve and max_pipelined to wait, and those answered meanwhile.
    answered = int((time.monotonic() - started) / SLOW_S)
    assert held_at is not None, f"the server read all {count} pipelined requests"
    assert held_at <= LIMITS.max_pipelined + 1 + answered
    for _ in range(held_at + 1, count):
        sock.sendall(one)
    reader = Reader(sock)
    sock.settimeout(30)
    assert [reader.response().status for _ in range(count)] == [200] * count
