"""The gateway with real fake-replica processes: balancing, ejection, retries, queueing, 503s."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from inference.gateway.registry import RegistrySnapshot, ReplicaRecord, write_registry
from inference.gateway.server import GatewayConfig
from tests.gateway_support import fake_replica, free_port, running_gateway, wait_for

pytestmark = pytest.mark.timeout(60)
INFER = "/v2/models/fake/infer"


def config(*upstreams: int, **overrides: object) -> GatewayConfig:
    return GatewayConfig(
        port=0,
        static_upstreams=tuple(f"127.0.0.1:{p}" for p in upstreams),
        **overrides,  # type: ignore[arg-type]
    )


def infer(client: httpx.Client) -> httpx.Response:
    return client.post(INFER, json={"inputs": []})


def test_requests_are_spread_over_replicas_by_least_outstanding() -> None:
    with (
        fake_replica(delay_ms=50) as (a, port_a),
        fake_replica(delay_ms=50) as (b, port_b),
        running_gateway(config(port_a, port_b)) as gateway,
    ):
        url = f"http://{gateway.address}"
        with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=url) as client:
            responses = list(pool.map(lambda _: infer(client), range(40)))
    served_by = [r.json()["replica"] for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert 12 <= served_by.count(a.pid) <= 28 and 12 <= served_by.count(b.pid) <= 28


def test_clients_never_see_a_replica_port() -> None:
    with fake_replica() as (_, port), running_gateway(config(port)) as gateway:
        response = httpx.post(f"http://{gateway.address}{INFER}", json={})
    assert str(port) not in response.text and all(str(port) not in v for v in response.headers.values())


def test_a_hung_replica_is_ejected_within_a_second_and_restored_when_it_answers() -> None:
    with (
        fake_replica() as (a, port_a),
        fake_replica() as (_, port_b),
        running_gateway(config(port_a, port_b)) as gateway,
    ):
        os.kill(a.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            wait_for(lambda: not gateway.balancer.upstreams["static-0"].healthy, 2, 0.02, "ejection")
            assert time.monotonic() - stopped < 1.0
            with httpx.Client(base_url=f"http://{gateway.address}", timeout=5) as client:
                assert all(infer(client).status_code == 200 for _ in range(20))
        finally:
            os.kill(a.pid, signal.SIGCONT)
        wait_for(lambda: gateway.balancer.upstreams["static-0"].healthy, 3, 0.02, "restore")


def test_requests_in_flight_on_a_hung_replica_are_retried_elsewhere() -> None:
    with (
        fake_replica(delay_ms=200) as (a, port_a),
        fake_replica() as (_b, port_b),
        running_gateway(config(port_a, port_b)) as gateway,
        ThreadPoolExecutor(8) as pool,
        httpx.Client(base_url=f"http://{gateway.address}", timeout=10) as client,
    ):
        futures = [pool.submit(infer, client) for _ in range(8)]
        time.sleep(0.05)
        os.kill(a.pid, signal.SIGSTOP)
        try:
            responses = [f.result() for f in futures]
        finally:
            os.kill(a.pid, signal.SIGCONT)
    assert [r.status_code for r in responses] == [200] * 8


def test_a_dead_replica_costs_no_failed_request() -> None:
    with (
        fake_replica() as (a, port_a),
        fake_replica() as (_b, port_b),
        running_gateway(config(port_a, port_b)) as gateway,
        httpx.Client(base_url=f"http://{gateway.address}") as client,
    ):
        for _ in range(10):
            infer(client)  # open keep-alive connections to both
        a.kill()
        a.wait()
        statuses = [infer(client).status_code for _ in range(50)]
    assert statuses == [200] * 50
    assert gateway.stats.retries_total >= 1


def test_full_queue_answers_503_with_retry_after_and_exports_its_length() -> None:
    with fake_replica(delay_ms=500) as (_, port):
        cfg = config(port, max_in_flight_per_replica=1, queue_capacity=1)
        with (
            running_gateway(cfg) as gateway,
            ThreadPoolExecutor(3) as pool,
            httpx.Client(base_url=f"http://{gateway.address}", timeout=10) as client,
        ):
            first = pool.submit(infer, client)
            wait_for(lambda: gateway.balancer.in_flight == 1, 2, what="first in flight")
            second = pool.submit(infer, client)
            wait_for(lambda: gateway.balancer.queue_length == 1, 2, what="second queued")
            metrics = client.get("/metrics").text
            third = infer(client)
            assert first.result().status_code == 200 and second.result().status_code == 200
    assert third.status_code == 503 and third.headers["retry-after"] == "1"
    assert 'prewarm_gateway_queue_length{deployment="default"} 1' in metrics


def test_no_ready_replica_answers_503_with_retry_after() -> None:
    unused_port = free_port()  # nothing listens there
    with (
        running_gateway(config(unused_port)) as gateway,
        httpx.Client(base_url=f"http://{gateway.address}") as client,
    ):
        wait_for(lambda: not gateway.balancer.routable(), 2, what="ejection")
        response = infer(client)
        ready = client.get("/v2/health/ready")
    assert response.status_code == 503 and "retry-after" in response.headers
    assert ready.status_code == 503


def test_the_gateway_follows_the_backend_registry(tmp_path: Path) -> None:
    with fake_replica() as (a, port_a), fake_replica() as (b, port_b):
        registry = tmp_path / "replicas.json"
        write_registry(
            registry, RegistrySnapshot("d", (ReplicaRecord("r1", "127.0.0.1", port_a, "ready", a.pid),))
        )
        with (
            running_gateway(GatewayConfig(port=0, registry_dir=tmp_path, registry_poll_s=0.05)) as gateway,
            httpx.Client(base_url=f"http://{gateway.address}") as client,
        ):
            assert {infer(client).json()["replica"] for _ in range(6)} == {a.pid}
            records = (
                ReplicaRecord("r1", "127.0.0.1", port_a, "stopping", a.pid),
                ReplicaRecord("r2", "127.0.0.1", port_b, "ready", b.pid),
            )
            write_registry(registry, RegistrySnapshot("d", records))
            wait_for(lambda: "r1" not in gateway.balancer.upstreams, 2, what="r1 drained")
            assert {infer(client).json()["replica"] for _ in range(6)} == {b.pid}
        load = json.loads((tmp_path / "gateway.json").read_text())
    assert "r2" in load["in_flight"]
