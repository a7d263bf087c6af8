"""Several ``prewarm controller`` processes on one Postgres: the fleet shared, failover after kill -9, fencing of a
controller paused past its lease (SIGSTOP / SIGCONT), and SQLite's single controller."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from controller.leases import bucket_of
from prewarm.db.engine import create_engine_for_url
from prewarm.db.models import ScalingDecision
from tests.controller_support import Controller, wait_for
from tests.kube_support import NAME, NAMESPACE, ApiServer, api_server

pytestmark = pytest.mark.slow
__all__ = ["api_server"]

BUCKETS = 8


@pytest.fixture
def controllers() -> Iterator[list[Controller]]:
    started: list[Controller] = []
    yield started
    for controller in started:
        controller.stop()


def _fleet(controller: Controller) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = controller.get("/api/v1/fleet?limit=500")["items"]
    return items


def _create_dry_run(controller: Controller, names: list[str]) -> None:
    for name in names:
        controller.post(
            "/api/v1/deployments",
            {"name": name, "model": "digits_mlp", "backend": "dry-run", "backend_config": {"initial_replicas": 2},
             "min_replicas": 1, "max_replicas": 8},
        )  # fmt: skip


def test_two_controllers_share_the_fleet_and_one_takes_over_within_5_s_after_kill_9(
    postgres_url: str, tmp_path: Path, controllers: list[Controller]
) -> None:
    names = [f"model-{i:02d}" for i in range(16)]
    a = Controller(postgres_url, tmp_path, "a", PREWARM_CONTROLLER_IDENTITY="a", PREWARM_LEASE_BUCKETS=str(BUCKETS))
    b = Controller(postgres_url, tmp_path, "b", PREWARM_CONTROLLER_IDENTITY="b", PREWARM_LEASE_BUCKETS=str(BUCKETS))
    controllers += [a, b]
    a.start()
    _create_dry_run(a, names)
    b.start()

    # Both hold half of the buckets, and every deployment is decided by the holder of its bucket.
    def shared() -> list[dict[str, Any]] | None:
        held = [len(c.get("/readyz")["buckets"]) for c in (a, b)]
        items = _fleet(b)
        fresh = all(i["decided_by"] == i["owner"] and i["owner"] in ("a", "b") for i in items)
        return items if held == [BUCKETS // 2, BUCKETS // 2] and fresh else None

    items = wait_for(shared, timeout_s=60)
    a_names = [i["name"] for i in items if i["owner"] == "a"]
    assert a_names and len(a_names) < len(names)
    assert {bucket_of(n, BUCKETS) for n in a_names} == set(a.get("/readyz")["buckets"])

    killed_at = time.time()
    assert a.kill(signal.SIGKILL) == -signal.SIGKILL

    def taken_over() -> bool:
        by_name = {i["name"]: i for i in _fleet(b)}
        return all(
            by_name[n]["decided_by"] == "b" and datetime.fromisoformat(by_name[n]["decided_at"]).timestamp() > killed_at
            for n in a_names
        )

    wait_for(taken_over, timeout_s=30, every_s=0.05)
    failover_s = time.time() - killed_at
    print(f"failover after kill -9: every deployment of the killed controller decided again in {failover_s:.2f} s")
    assert failover_s <= 5.0, f"failover took {failover_s:.2f} s"
    assert len(b.get("/readyz")["buckets"]) == BUCKETS


def _kubeconfig(path: Path, server: ApiServer, token: str) -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: mock, cluster: {{server: "{server.url}"}}}}]
users: [{{name: prewarm, user: {{token: {token}}}}}]
contexts: [{{name: test, context: {{cluster: mock, user: prewarm}}}}]
current-context: test
"""
    )
    return path


def test_a_controller_paused_past_its_lease_makes_no_backend_call_and_records_nothing_when_it_resumes(
    postgres_url: str, tmp_path: Path, controllers: list[Controller], api_server: ApiServer
) -> None:
    cluster = api_server.cluster
    env = {"PREWARM_LEASE_BUCKETS": "1"}  # one bucket: exactly one of them may act
    a = Controller(postgres_url, tmp_path, "a", PREWARM_CONTROLLER_IDENTITY="a",
                   KUBECONFIG=str(_kubeconfig(tmp_path / "a.kubeconfig", api_server, "token-a")), **env)  # fmt: skip
    b = Controller(postgres_url, tmp_path, "b", PREWARM_CONTROLLER_IDENTITY="b",
                   KUBECONFIG=str(_kubeconfig(tmp_path / "b.kubeconfig", api_server, "token-b")), **env)  # fmt: skip
    controllers += [a, b]
    a.start()
    a.post(
        "/api/v1/deployments",
        {"name": "resnet", "model": "resnet", "backend": "kubernetes",
         "backend_config": {"namespace": NAMESPACE, "deployment": NAME, "request_timeout_s": 1, "max_attempts": 2},
         "min_replicas": 1, "max_replicas": 8, "policy": {"decision_interval_s": 0.2}},
    )  # fmt: skip
    b.start()

    def calls_by(token: str, after: float = 0.0) -> int:
        return sum(
            1
            for (_method, _path, _body, auth), at in zip(cluster.requests, cluster.times, strict=False)
            if auth == f"Bearer {token}" and at > after
        )

    wait_for(lambda: calls_by("token-a") > 5, timeout_s=30)
    assert calls_by("token-b") == 0  # the standby leaves the deployment alone

    # Slow answers for a: it is in the middle of a reconcile (between two backend calls) when it is stopped, so
    # on resuming its worker goes on to the next call unless that call is fenced.
    cluster.delays["Bearer token-a"] = 1.0
    time.sleep(1.5)
    a.signal(signal.SIGSTOP)
    stopped_at = time.time()
    wait_for(lambda: calls_by("token-b") > 5, timeout_s=30)  # b took the bucket over once a's lease expired
    took_over_at = time.time()
    time.sleep(1.0)
    a.signal(signal.SIGCONT)
    resumed_at = time.time()
    time.sleep(4.0)  # a's workers and pass thread resume: any unfenced call would happen now

    assert a.process is not None and a.process.poll() is None, "the resumed controller must keep running"
    assert calls_by("token-a", after=resumed_at - 0.05) == 0, "a backend call by a controller that lost its lease"
    assert calls_by("token-b", after=resumed_at) > 0, "the new owner goes on acting"
    engine = create_engine_for_url(postgres_url)
    try:
        with engine.connect() as connection:
            late = connection.execute(
                select(ScalingDecision.ts).where(
                    ScalingDecision.controller == "a",
                    ScalingDecision.ts > datetime.fromtimestamp(stopped_at).astimezone(),
                )
            ).all()
    finally:
        engine.dispose()
    assert late == [], f"decisions recorded by the fenced controller: {late}"
    assert a.get("/readyz")["buckets"] == []
    print(f"paused {took_over_at - stopped_at:.1f} s before b took over; a resumed and made no call")


def test_a_second_controller_on_sqlite_is_refused_with_a_clear_message(
    tmp_path: Path, controllers: list[Controller]
) -> None:
    from prewarm.db import migrate

    url = f"sqlite:///{tmp_path / 'prewarm.db'}"
    migrate.upgrade(url)
    first = Controller(url, tmp_path, "first")
    second = Controller(url, tmp_path, "second")
    controllers += [first, second]
    first.start()
    process = second.spawn()
    assert process.wait(timeout=60) == 2
    log = second.log()
    assert "SQLite supports one controller" in log and "Postgres" in log, log[-2000:]
    assert first.get("/readyz")["ready"] is True
