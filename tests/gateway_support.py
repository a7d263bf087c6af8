"""Helpers for gateway and local-backend tests: fake replicas, an in-thread gateway, waiting with a deadline."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from inference.gateway.collector import BatchWriter
from inference.gateway.server import Gateway, GatewayConfig

FAKE_REPLICA = str(Path(__file__).with_name("gateway_fake_replica.py"))
T = TypeVar("T")


def fake_replica_command(warm_s: float = 0.2, delay_ms: float = 0.0) -> tuple[str, ...]:
    return (
        sys.executable,
        FAKE_REPLICA,
        "--port",
        "{port}",
        "--warm-s",
        str(warm_s),
        "--delay-ms",
        str(delay_ms),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T], timeout_s: float, interval_s: float = 0.05, what: str = "condition"
) -> T:
    """Poll until ``condition()`` is truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


@contextmanager
def fake_replica(
    port: int | None = None, warm_s: float = 0.0, delay_ms: float = 0.0
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A fake replica process, ready when this yields; killed afterwards."""
    from controller.backends.local_process import probe_ready

    port = port or free_port()
    command = [part.format(port=port) for part in fake_replica_command(warm_s, delay_ms)]
    process = subprocess.Popen(command)
    try:
        wait_for(lambda: probe_ready("127.0.0.1", port, 0.5), 10, what=f"fake replica on {port}")
        yield process, port
    finally:
        process.kill()
        process.wait(5)


@contextmanager
def running_gateway(config: GatewayConfig, writer: BatchWriter | None = None) -> Iterator[Gateway]:
    """A gateway serving in a background thread with its own event loop."""
    loop = asyncio.new_event_loop()
    gateway = Gateway(config, writer)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(gateway.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "gateway did not start"
    try:
        yield gateway
    finally:
        asyncio.run_coroutine_threadsafe(gateway.stop(drain_timeout_s=1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def call_in_loop(gateway: Gateway, function: Callable[[], T]) -> T:
    """Run ``function`` on the gateway's loop thread (its state is not thread-safe)."""
    loop = gateway._server.get_loop() if gateway._server else None
    assert loop is not None

    async def wrapper() -> T:
        return function()

    return asyncio.run_coroutine_threadsafe(wrapper(), loop).result(5)


@contextmanager
def running_nginx_gateway(
    config: GatewayConfig, workdir: Path, writer: BatchWriter | None = None
) -> Iterator[tuple[Gateway, str]]:
    """A gateway driving nginx; yields the gateway and nginx's address (what clients use)."""
    from inference.gateway.nginx import NginxConfig, NginxFrontend

    port = free_port()
    with running_gateway(config, writer) as gateway:
        loop = gateway._server.get_loop() if gateway._server else None
        assert loop is not None
        frontend = NginxFrontend(gateway, NginxConfig("127.0.0.1", port, workdir), free_port())
        asyncio.run_coroutine_threadsafe(frontend.start(), loop).result(10)
        try:
            yield gateway, f"127.0.0.1:{port}"
        finally:
            asyncio.run_coroutine_threadsafe(frontend.stop(), loop).result(20)
