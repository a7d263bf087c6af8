"""The open-loop load generator: schedule, counting, and failures reported (never hidden)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import cast

import httptools
import numpy as np
import pytest
import uvicorn

from benchmarks.replica_baselines import trivial_app
from inference.loadgen import RateStep, build_request, intended_times, run_open_loop
from inference.testing import free_port


def test_intended_times_are_evenly_spaced_per_step() -> None:
    times = intended_times([RateStep(1.0, 4), RateStep(0.5, 10)])
    np.testing.assert_allclose(times, [0, 0.25, 0.5, 0.75, 1.0, 1.1, 1.2, 1.3, 1.4])


def test_request_bytes_carry_length_and_extra_headers() -> None:
    raw = build_request("http://127.0.0.1:9/v2/x?y=1", b"{}", {"Inference-Header-Content-Length": "2"})
    assert raw.startswith(b"POST /v2/x?y=1 HTTP/1.1\r\n")
    assert b"Content-Length: 2\r\n" in raw and b"Inference-Header-Content-Length: 2\r\n" in raw
    assert raw.endswith(b"\r\n\r\n{}")


@pytest.fixture(scope="module")
def trivial_url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(trivial_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


def test_every_request_of_the_schedule_is_sent_and_answered(trivial_url: str) -> None:
    result = run_open_loop(trivial_url, b"{}", [RateStep(0.5, 200)], connections=4)
    summary = result.summary()
    assert summary.sent == 100 and summary.ok == 100 and summary.errors == 0
    assert 0 < summary.p50_ms <= summary.p95_ms <= summary.p99_ms


def test_a_server_refusing_connections_fails_the_run_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(OSError):
        run_open_loop(url, b"{}", [RateStep(0.1, 100)], connections=2)


# --- servers that close keep-alive connections ------------------------------------------------------------------
class _ClosingServer:
    """An HTTP/1.1 server on 127.0.0.1 (asyncio + httptools, in a thread) that answers ``{}`` and may close connections:

    - ``idle_close_s``: connections idle this long (since accepted or last answered) are closed silently, as servers
      do with a keep-alive timeout;
    - ``drop_after_idle_s``: a request arriving on a connection idle at least this long is not answered, the
      connection closed instead: what a client sees when the server's idle close crosses its request;
    - ``drop_all``: every request is dropped that way (a broken server).
    """

    def __init__(
        self, idle_close_s: float | None = None, drop_after_idle_s: float | None = None, drop_all: bool = False
    ) -> None:
        self.idle_close_s, self.drop_after_idle_s, self.drop_all = idle_close_s, drop_after_idle_s, drop_all
        self.dropped = 0
        self.closed_idle = 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _ClosingServer:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        connections: set[_ServerConnection] = set()
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _ServerConnection(self, connections), "127.0.0.1", self.port)
        )
        sweeper = self.loop.create_task(self._close_idle(connections, self.idle_close_s))
        self.ready.set()
        self.loop.run_forever()
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(sweeper)
        server.close()
        for connection in list(connections):
            connection.transport.abort()
        self.loop.close()

    async def _close_idle(self, connections: set[_ServerConnection], after_s: float | None) -> None:
        if after_s is None:
            return
        while True:
            await asyncio.sleep(after_s / 5)
            for connection in list(connections):
                if not connection.partial and time.monotonic() - connection.idle_since > after_s:
                    self.closed_idle += 1
                    connection.transport.close()


class _ServerConnection(asyncio.Protocol):
    def __init__(self, server: _ClosingServer, connections: set[_ServerConnection]) -> None:
        self.server, self.connections = server, connections
        self.parser = httptools.HttpRequestParser(self)
        self.idle_since = time.monotonic()
        self.partial = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.partial = True

    def on_message_complete(self) -> None:
        server = self.server
        drop_after = server.drop_after_idle_s
        if server.drop_all or (drop_after is not None and time.monotonic() - self.idle_since >= drop_after):
            server.dropped += 1
            self.transport.close()
            return
        self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        self.idle_since, self.partial = time.monotonic(), False


def test_connections_the_server_closes_while_idle_are_replaced() -> None:
    # Bursts with a pause longer than the server's keep-alive timeout: every pooled connection is closed meanwhile.
    schedule = [RateStep(0.5, 40), RateStep(1.0, 1), RateStep(0.5, 40)]
    with _ClosingServer(idle_close_s=0.3) as server:
        result = run_open_loop(f"http://127.0.0.1:{server.port}/", b"{}", schedule, connections=4)
    summary = result.summary()
    assert server.closed_idle >= 4, "the pause should have outlasted the server's keep-alive timeout"
    assert summary.sent == 41 and summary.errors == 0, summary


def test_a_request_that_meets_the_servers_idle_close_is_sent_again_once_and_counted() -> None:
    # Two connections taking turns every 0.5 s: each request finds its connection idle for 0.5 s, and the server
    # closes such a connection instead of answering. The client sends the request again on a new connection.
    with _ClosingServer(drop_after_idle_s=0.3) as server:
        result = run_open_loop(f"http://127.0.0.1:{server.port}/", b"{}", [RateStep(2.0, 4)], connections=2)
    summary = result.summary()
    assert server.dropped >= 4
    assert summary.sent == 8 and summary.ok == 8 and summary.errors == 0, summary
    assert result.retried == summary.retried == server.dropped  # every repeat is counted, none is hidden


def test_a_server_that_drops_every_request_fails_them_all() -> None:
    with _ClosingServer(drop_all=True) as server:
        result = run_open_loop(f"http://127.0.0.1:{server.port}/", b"{}", [RateStep(0.5, 10)], connections=2)
    summary = result.summary()
    assert summary.sent == 5 and summary.ok == 0 and summary.errors == 5
    assert result.retried <= 5 and server.dropped == 5 + result.retried  # sent again at most once, failed again


def test_connections_the_server_closed_while_idle_are_replaced() -> None:
    """A server that drops idle keep-alive connections (an idle timeout, nginx reloading) must not starve the run:
    the next requests open new connections instead of waiting for ones that are gone."""
    port = free_port()
    config = uvicorn.Config(
        trivial_app(), host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        # a burst, 2.5 s of silence (the server closes every idle connection after 1 s), another burst
        schedule = [RateStep(0.5, 40), RateStep(2.5, 0.0), RateStep(0.5, 40)]
        summary = run_open_loop(
            f"http://127.0.0.1:{port}/", b"{}", schedule, connections=4, timeout_s=2.0
        ).summary()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert summary.sent == 40 and summary.ok == 40 and summary.errors == 0


def test_the_generator_reports_how_late_it_sent_its_requests(trivial_url: str) -> None:
    """Its own lag against the replay clock (a busy machine delays an open-loop generator too)."""
    result = run_open_loop(trivial_url, b"{}", [RateStep(1.0, 50)], connections=4)
    slip = result.send_slip_s()
    assert len(slip) == 50 and (slip >= 0).all()  # never before its time
    assert float(np.percentile(slip, 50)) < 0.5  # and not absurdly late on an idle local server
