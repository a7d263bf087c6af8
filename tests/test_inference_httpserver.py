"""The built-in HTTP server's protocol handling, over raw sockets against a real replica process."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from inference.testing import DEFAULT_MODEL, ReplicaProcess, digits_body, replica_process

pytestmark = pytest.mark.slow
INFER = f"/v2/models/{DEFAULT_MODEL}/infer".encode()


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaProcess]:
    log_dir: Path = tmp_path_factory.mktemp("fast")
    with replica_process(log_dir, extra_args=["--server", "fast", "--max-body-bytes", "20000"]) as process:
        process.wait_ready()
        yield process


def post(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (INFER, len(body), extra, body)


def exchange(replica: ReplicaProcess, raw: bytes, responses: int = 1) -> list[bytes]:
    """Send raw bytes, read ``responses`` complete responses (content-length framed)."""
    with socket.create_connection(("127.0.0.1", replica.port), timeout=10) as sock:
        sock.sendall(raw)
        buffer, out = b"", list[bytes]()
        while len(out) < responses:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, rest = buffer.split(b"\r\n\r\n", 1)
                if head.startswith(b"HTTP/1.1 100"):
                    out.append(head)
                    buffer = rest
                    continue
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                out.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
        return out


def test_pipelined_requests_are_answered_in_order(replica: ReplicaProcess) -> None:
    get_ready = b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n"
    answers = exchange(replica, post(digits_body()) + get_ready + post(b"{}"), responses=3)
    assert [answer.split(b" ")[1] for answer in answers] == [b"200", b"200", b"400"]
    assert b'"ready":true' in answers[1]


def test_expect_100_continue_gets_an_interim_response(replica: ReplicaProcess) -> None:
    answers = exchange(replica, post(digits_body(), b"Expect: 100-continue\r\n"), responses=2)
    assert answers[0].startswith(b"HTTP/1.1 100 Continue") and answers[1].startswith(b"HTTP/1.1 200")


def test_body_over_the_limit_is_413_by_content_length(replica: ReplicaProcess) -> None:
    answer = exchange(replica, post(digits_body(rows=100)))[0]
    assert answer.startswith(b"HTTP/1.1 413") and b"limit" in answer


def test_chunked_body_over_the_limit_is_413(replica: ReplicaProcess) -> None:
    body = digits_body(rows=100)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 4000]), body[i : i + 4000]) for i in range(0, len(body), 4000)
    )
    raw = b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (INFER, chunks)
    assert exchange(replica, raw)[0].startswith(b"HTTP/1.1 413")


def test_chunked_body_within_the_limit_is_served(replica: ReplicaProcess) -> None:
    body = digits_body()
    raw = b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        INFER,
        len(body),
        body,
    )
    assert exchange(replica, raw)[0].startswith(b"HTTP/1.1 200")


def test_malformed_request_gets_400_and_the_server_keeps_serving(replica: ReplicaProcess) -> None:
    assert exchange(replica, b"NOT HTTP AT ALL\r\n\r\n")[0].startswith(b"HTTP/1.1 400")
    assert httpx.post(replica.url + INFER.decode(), content=digits_body()).status_code == 200


def test_connection_close_is_honoured(replica: ReplicaProcess) -> None:
    answer = exchange(replica, post(digits_body(), b"Connection: close\r\n"))[0]
    assert b"connection: close" in answer.lower()


def test_openapi_and_metrics_are_served_through_the_asgi_path(replica: ReplicaProcess) -> None:
    assert httpx.get(replica.url + "/openapi.json").json()["info"]["title"] == "prewarm replica"
    assert "prewarm_replica_requests_total" in httpx.get(replica.url + "/metrics").text
