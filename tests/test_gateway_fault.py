"""Fault test: real replicas, real gateway, real Postgres, open-loop load; kill -9 and hang one replica."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.backends.local import LocalBackendConfig, LocalProcessBackend
from controller.backends.local_events import StoreEventSink
from inference.gateway.registry import read_registry
from inference.gateway.server import GatewayConfig
from inference.gateway.upstream import Upstream, UpstreamError
from inference.testing import DEFAULT_MODEL, DEFAULT_MODEL_REPO, digits_body
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.models import ReplicaEvent
from tests.gateway_support import running_gateway, running_nginx_gateway, wait_for
from tests.helpers import add_deployment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
RATE_RPS = 400


def open_loop(address: str, rate_rps: float, duration_s: float, at: float, action: object) -> tuple[int, int]:
    """Send ``rate_rps`` requests/s for ``duration_s`` regardless of answers; run ``action`` ``at`` s in.

    Returns (sent, failed): failed = anything but a 200.
    """
    host, _, port = address.rpartition(":")
    path = f"/v2/models/{DEFAULT_MODEL}/infer"
    body = digits_body()
    payload = (
        f"POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def run() -> tuple[int, int]:
        client = Upstream("gateway", host, int(port))
        failed = 0

        async def one() -> None:
            nonlocal failed
            try:
                response = await client.request(payload, 2.0, 10.0)
                failed += response.status != 200
            except UpstreamError:
                failed += 1

        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        acted = False
        sent = 0
        while (now := loop.time()) - start < duration_s:
            due = int((now - start) * rate_rps) + 1
            while sent < due:
                tasks.append(asyncio.create_task(one()))
                sent += 1
            if not acted and now - start >= at:
                acted = True
                assert callable(action)
                action()
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
        client.abort_all()
        return sent, failed

    return asyncio.run(run())


@pytest.fixture
def pool(tmp_path: Path, postgres_url: str) -> Iterator[tuple[LocalProcessBackend, str]]:
    engine = create_engine_for_url(postgres_url)
    add_deployment(engine, "digits")
    config = LocalBackendConfig(
        deployment="digits", model=DEFAULT_MODEL, model_repo=str(DEFAULT_MODEL_REPO), state_dir=tmp_path / "digits",
        liveness_interval_s=0.2,
    )  # fmt: skip
    backend = LocalProcessBackend(config, StoreEventSink(engine, "digits"))
    backend.scale_to(3)
    try:
        wait_for(lambda: backend.ready_count() == 3, 30, what="3 replicas ready")
        yield backend, postgres_url
    finally:
        backend.close()
        engine.dispose()


def replica_pids(backend: LocalProcessBackend) -> dict[str, int]:
    snapshot = read_registry(backend.config.state_dir / "replicas.json")
    assert snapshot is not None
    return {r.replica_id: r.pid for r in snapshot.replicas if r.pid is not None and r.state == "ready"}


def events(database_url: str) -> list[ReplicaEvent]:
    engine = create_engine_for_url(database_url)
    with session_factory(engine)() as session:
        rows = list(session.scalars(select(ReplicaEvent).order_by(ReplicaEvent.id)))
    engine.dispose()
    return rows


@pytest.mark.parametrize("proxy", ["python", "nginx"])
def test_kill_9_under_load_fails_no_request_and_the_replica_is_back_within_5_s(
    pool: tuple[LocalProcessBackend, str], proxy: str, tmp_path: Path
) -> None:
    backend, database_url = pool
    victim_id, victim_pid = next(iter(replica_pids(backend).items()))
    killed_at: list[float] = []

    def kill() -> None:
        os.kill(victim_pid, signal.SIGKILL)
        killed_at.append(time.time())

    config = GatewayConfig(
        deployment="digits", port=0, registry_dir=backend.config.state_dir, registry_poll_s=0.1
    )
    front = (
        running_gateway(config) if proxy == "python" else running_nginx_gateway(config, tmp_path / "nginx")
    )
    with front as entered:
        gateway, address = (entered, entered.address) if proxy == "python" else entered
        wait_for(lambda: len(gateway.balancer.routable()) == 3, 5, what="gateway sees 3 replicas")
        sent, failed = open_loop(address, RATE_RPS, 6.0, 2.0, kill)
        replaced = wait_for(
            lambda: backend.ready_count() == 3 and victim_id not in replica_pids(backend),
            10,
            what="replacement",
        )
        assert replaced
    replacement_ready = [
        e.ts.timestamp()
        for e in events(database_url)
        if e.event == "ready" and e.ts.timestamp() > killed_at[0]
    ]
    ready_again_s = min(replacement_ready) - killed_at[0]
    print(f"[{proxy}] sent {sent}, failed {failed}, replacement ready {ready_again_s:.2f} s after kill -9")
    assert sent >= RATE_RPS * 5
    assert failed <= sent * 0.001, f"{failed} of {sent} requests failed"
    assert ready_again_s < 5.0
    failures = [e for e in events(database_url) if e.event == "failed"]
    assert [e.replica for e in failures] == [victim_id]


def test_a_hung_replica_under_load_is_ejected_and_replaced(pool: tuple[LocalProcessBackend, str]) -> None:
    backend, database_url = pool
    victim_id, victim_pid = next(iter(replica_pids(backend).items()))
    config = GatewayConfig(
        deployment="digits", port=0, registry_dir=backend.config.state_dir, registry_poll_s=0.1
    )
    try:
        with running_gateway(config) as gateway:
            wait_for(lambda: len(gateway.balancer.routable()) == 3, 5, what="gateway sees 3 replicas")
            sent, failed = open_loop(
                gateway.address, RATE_RPS, 6.0, 1.0, lambda: os.kill(victim_pid, signal.SIGSTOP)
            )
            wait_for(
                lambda: backend.ready_count() == 3 and victim_id not in replica_pids(backend),
                15,
                what="replacement",
            )
    finally:
        if os.path.exists(f"/proc/{victim_pid}"):
            os.kill(victim_pid, signal.SIGKILL)
    print(f"[hang] sent {sent}, failed {failed}")
    assert failed <= sent * 0.001, f"{failed} of {sent} requests failed"
    assert any(e.event == "failed" and e.replica == victim_id for e in events(database_url))
