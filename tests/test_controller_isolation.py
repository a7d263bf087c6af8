"""One deployment's trouble is its own: backends that hang 30 s (ten of them, on a pool of 4 threads), a stored
policy that no longer validates and a backend with a bug, beside healthy deployments that keep being decided every
interval."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select, update

from controller import repository
from controller.backends.base import ReplicaBackend
from controller.backends.dry_run import DryRunBackend
from controller.loop import ReconcileLoop
from controller.loop_inputs import DeploymentRow
from controller.loop_metrics import ControllerMetrics
from controller.policy import ScalingPolicy
from controller.sources.store import StoreSource
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.models import DeploymentStatus, Policy
from prewarm.db.store import MetricsStore, Sample

HEALTHY = [f"healthy-{i}" for i in range(4)]
HANGING = [f"hangs-{i}" for i in range(10)]  # more hanging backends than the pool's 4 threads
RUN_S = 6.0


class Hanging(DryRunBackend):
    def __init__(self, release: threading.Event) -> None:
        super().__init__(initial_replicas=2)
        self.release = release

    def desired_count(self) -> int:
        self.release.wait(30)  # a Kubernetes API server that never answers, bounded for the test
        return super().desired_count()


class Buggy(DryRunBackend):
    def ready_count(self) -> int:
        raise ZeroDivisionError("a bug in a backend")


def _create(engine: Engine, name: str) -> int:
    with session_factory(engine)() as session:
        deployment = repository.create_deployment(
            session, name=name, model="m", backend="dry-run", backend_config={}, min_replicas=1, max_replicas=8,
            price_per_replica_hour=0, policy=ScalingPolicy(decision_interval_s=1.0), author="test",
        )  # fmt: skip
        session.commit()
        return deployment.id


def _decisions(registry: CollectorRegistry, name: str) -> float:
    total = 0.0
    for metric in registry.collect():
        if metric.name == "prewarm_controller_decisions":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total") and s.labels["deployment"] == name)
    return total


def _errors(registry: CollectorRegistry, name: str, stage: str) -> float:
    value = registry.get_sample_value("prewarm_controller_errors_total", {"deployment": name, "stage": stage})
    return value or 0.0


@pytest.fixture
def pg(postgres_url: str) -> Engine:
    return create_engine_for_url(postgres_url)


def test_a_hanging_backend_an_invalid_policy_and_a_bug_cost_their_deployment_alone(pg: Engine) -> None:
    for name in [*HEALTHY, *HANGING, "bad-policy", "buggy"]:
        deployment_id = _create(pg, name)
    now = time.time()
    MetricsStore(pg).insert_samples(
        [Sample(n, "cpu_percent", now - i, 50.0) for n in HEALTHY for i in range(30)]
    )
    with pg.begin() as connection:  # a policy stored by an older version, now invalid
        bad_id = _create_id(pg, "bad-policy")
        connection.execute(
            update(Policy).where(Policy.deployment_id == bad_id).values(spec={"min_replicas": 5, "max_replicas": 2})
        )
    del deployment_id
    release = threading.Event()

    def factory(row: DeploymentRow) -> ReplicaBackend:
        if row.name in HANGING:
            return Hanging(release)
        if row.name == "buggy":
            return Buggy(initial_replicas=2)
        return DryRunBackend(initial_replicas=2)

    registry = CollectorRegistry()
    loop = ReconcileLoop(
        pg, StoreSource(MetricsStore(pg)), backend_factory=factory, state_root=Path("/tmp"),
        metrics=ControllerMetrics(registry), workers=4,
    )  # fmt: skip
    stop = asyncio.Event()
    runner = threading.Thread(target=asyncio.run, args=(_run_for(loop, stop, RUN_S),), daemon=True)
    started = time.monotonic()
    runner.start()
    runner.join(RUN_S + 20)
    elapsed = time.monotonic() - started
    try:
        assert not runner.is_alive(), "the loop did not stop"
        # Healthy deployments were decided about every second throughout, hang or no hang.
        for name in HEALTHY:
            assert _decisions(registry, name) >= RUN_S - 2, (name, _decisions(registry, name), elapsed)
        assert all(_decisions(registry, name) == 0 and loop.runtimes[name].busy for name in HANGING)
        assert _decisions(registry, "bad-policy") == 0
        assert _errors(registry, "bad-policy", "policy") >= 1  # retried every 5 s: its own interval is unknown
        assert _errors(registry, "buggy", "unexpected") >= RUN_S - 2
        status = loop.status("bad-policy")
        assert status is not None and status["error"]["stage"] == "policy"
        assert "max_replicas" in status["error"]["message"]
        with pg.connect() as connection:
            stored = {
                row.deployment_id: row for row in connection.execute(select(DeploymentStatus)).all()
            }
        assert stored[bad_id].error_stage == "policy" and stored[bad_id].errors_total >= 1
        assert stored[_create_id(pg, "buggy")].error_stage == "unexpected"
        assert "ZeroDivisionError" in (stored[_create_id(pg, "buggy")].error_message or "")
    finally:
        release.set()
        loop.close()
        pg.dispose()


def _create_id(engine: Engine, name: str) -> int:
    with session_factory(engine)() as session:
        return repository.get_deployment(session, name).id


async def _run_for(loop: ReconcileLoop, stop: asyncio.Event, seconds: float) -> None:
    async def stopper() -> None:
        await asyncio.sleep(seconds)
        stop.set()

    await asyncio.gather(loop.run(stop, tick_s=0.1), stopper())
