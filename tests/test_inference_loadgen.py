"""The open-loop load generator: schedule, counting, and failures reported (never hidden)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

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
