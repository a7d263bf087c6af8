"""The activator: with no replica ready the gateway holds requests, pushes to the controller, releases them at once."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from inference.gateway.activator import ActivatorConfig
from inference.gateway.registry import REPLICAS_FILE, RegistrySnapshot, ReplicaRecord, write_registry
from inference.gateway.server import GatewayConfig
from tests.activator_support import PushLog, push_receiver
from tests.gateway_support import fake_replica, running_gateway, running_nginx_gateway, wait_for

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
INFER = "/v2/models/fake/infer"


def _publish(registry: Path, port: int | None) -> None:
    records = (ReplicaRecord("fake-1", "127.0.0.1", port, "ready"),) if port is not None else ()
    write_registry(registry / REPLICAS_FILE, RegistrySnapshot("fake", records))


def _config(registry: Path, url: str, **activator: float) -> GatewayConfig:
    return GatewayConfig(
        deployment="fake", port=0, registry_dir=registry,
        activator=ActivatorConfig(controller_url=url, token="t0k", **activator),  # type: ignore[arg-type]
    )  # fmt: skip


def _burst(address: str, count: int) -> list[tuple[int, float, str]]:
    """``count`` concurrent POSTs sent together (one connection each); (status, seconds, retry-after) each."""
    client = httpx.Client(base_url=f"http://{address}", timeout=30, limits=httpx.Limits(max_connections=count))
    barrier = threading.Barrier(count)

    def one(_: int) -> tuple[int, float, str]:
        barrier.wait()
        started = time.monotonic()
        response = client.post(INFER, json={})
        return response.status_code, time.monotonic() - started, response.headers.get("retry-after", "")

    try:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(one, range(count)))
    finally:
        client.close()


@contextmanager
def _held_burst_then_replica(
    tmp_path: Path, address: str, pushes: PushLog, count: int
) -> Iterator[tuple[list[int], float]]:
    """Send a burst at zero, bring a replica up after the push; yields the statuses and the release delay while
    the replica still runs."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(_burst, address, count)
    wait_for(lambda: any(h > 0 for h in pushes.held_counts()), 3, what="a push")
    time.sleep(0.3)  # the requests really wait
    assert not future.done()
    with fake_replica() as (_process, port):
        published = time.monotonic()
        _publish(tmp_path, port)
        results = future.result(20)
        released_after = time.monotonic() - published
        yield [status for status, _, _ in results], released_after


@pytest.mark.timeout(60)
def test_requests_at_zero_are_held_pushed_and_all_served_once_a_replica_is_ready(tmp_path: Path) -> None:
    _publish(tmp_path, None)
    with (
        push_receiver() as (url, pushes),
        running_gateway(_config(tmp_path, url)) as gateway,
        _held_burst_then_replica(tmp_path, gateway.address, pushes, 20) as (statuses, released_after),
    ):
        metrics = httpx.get(f"http://{gateway.address}/metrics").text
    assert statuses == [200] * 20
    assert released_after < 0.5, released_after  # registry read every 10 ms while holding
    path, body, auth = pushes.pushes[0]
    assert path == "/api/v1/deployments/fake/activate" and 1 <= body["held_requests"] <= 20 and auth == "Bearer t0k"
    assert 'prewarm_gateway_activator_held_total{deployment="fake"} 20' in metrics


@needs_nginx
@pytest.mark.timeout(60)
def test_nginx_at_zero_routes_through_the_activator(tmp_path: Path) -> None:
    _publish(tmp_path, None)
    with push_receiver() as (url, pushes), running_nginx_gateway(_config(tmp_path, url), tmp_path / "nginx") as (
        gateway,
        address,
    ):
        assert gateway.address in (tmp_path / "nginx" / "nginx.conf").read_text()  # at zero: to the activator
        with _held_burst_then_replica(tmp_path, address, pushes, 20) as (statuses, released_after):
            wait_for(lambda: "upstream replicas" in (tmp_path / "nginx" / "nginx.conf").read_text(), 2,
                     what="nginx routing to the replica directly")  # fmt: skip
            after = [httpx.post(f"http://{address}{INFER}", json={}).status_code for _ in range(5)]
    assert statuses == [200] * 20 and after == [200] * 5
    assert released_after < 0.5, released_after


@pytest.mark.timeout(30)
def test_past_its_bounds_the_activator_answers_503_with_retry_after(tmp_path: Path) -> None:
    _publish(tmp_path, None)
    config = _config(tmp_path, "", max_held=2, max_wait_s=0.5)
    with running_gateway(config) as gateway:
        results = sorted(_burst(gateway.address, 3), key=lambda r: r[1])
    assert [status for status, _, _ in results] == [503, 503, 503]
    assert all(retry == "1" for _, _, retry in results)
    refused, *timed_out = results
    assert refused[1] < 0.4  # the third found the activator full: refused at once
    assert all(0.45 < seconds < 2.0 for _, seconds, _ in timed_out)  # held for max_wait_s, then refused
