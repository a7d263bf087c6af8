"""On Kubernetes the lead time follows the cluster (pods' creation-to-Ready recorded as replica events), and the loop
decides from the Deployment's spec, never from the surge pods of a rolling update."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from controller import repository
from controller.backends.base import ReplicaBackend
from controller.backends.kubernetes import KubernetesBackend, KubernetesTarget
from controller.backends.local_events import StoreEventSink
from controller.loop import ReconcileLoop
from controller.loop_inputs import DeploymentRow
from controller.loop_metrics import ControllerMetrics
from controller.policy import ScalingPolicy
from controller.sources.store import StoreSource
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.store import MetricsStore, Sample
from tests.kube_support import NAME, NAMESPACE, PODS_PATH, ApiServer, api_server

__all__ = ["api_server"]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, created: datetime, ready_after_s: float | None) -> dict[str, Any]:
    """A pod of the Deployment created at ``created``, Ready ``ready_after_s`` later (None: not ready yet)."""
    condition: dict[str, Any] = {"type": "Ready", "status": "False"}
    if ready_after_s is not None:
        condition = {"type": "Ready", "status": "True",
                     "lastTransitionTime": _stamp(created + timedelta(seconds=ready_after_s))}  # fmt: skip
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "uid": f"uid-{name}", "namespace": NAMESPACE, "labels": {"app": "resnet"},
                     "creationTimestamp": _stamp(created)},
        "status": {"phase": "Running", "conditions": [condition]},
    }  # fmt: skip


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine_for_url(postgres_url)
    yield engine
    engine.dispose()


def _deployment(engine: Engine, policy: ScalingPolicy | None = None) -> int:
    with session_factory(engine)() as session:
        deployment = repository.create_deployment(
            session, name=NAME, model="resnet", backend="kubernetes",
            backend_config={"namespace": NAMESPACE, "deployment": NAME}, min_replicas=1, max_replicas=10,
            price_per_replica_hour=0, policy=policy, author="test",
        )  # fmt: skip
        session.commit()
        return deployment.id


def _backend(server: ApiServer, engine: Engine) -> KubernetesBackend:
    target = KubernetesTarget.from_config(
        {"namespace": NAMESPACE, "kubeconfig": str(server.kubeconfig), "context": "test", "max_attempts": 2,
         "backoff_initial_s": 0.05},
        default_name=NAME,
    )  # fmt: skip
    return KubernetesBackend(target, events=StoreEventSink(engine, NAME))


def _pod_lists(server: ApiServer) -> int:
    return sum(1 for method, path, *_ in server.cluster.requests if method == "GET" and path == PODS_PATH)


def test_each_new_pods_startup_is_recorded_from_its_timestamps_and_sets_the_lead_time(
    api_server: ApiServer, pg: Engine
) -> None:
    deployment_id = _deployment(pg)
    cluster = api_server.cluster
    now = datetime.now(UTC).replace(microsecond=0)
    cluster.replicas, cluster.ready_replicas = 1, 1
    cluster.pods = [pod("resnet-old", now - timedelta(hours=1), 40.0)]  # before we watched: not recorded
    backend = _backend(api_server, pg)
    assert backend.ready_count() == 1

    # Scaled to 3: two new pods start, then turn Ready 7 s and 3 s after their creation.
    created = now + timedelta(seconds=2)
    cluster.replicas = 3
    cluster.pods += [pod("resnet-b", created, None), pod("resnet-c", created, None)]
    assert backend.ready_count() == 1
    cluster.pods[1] = pod("resnet-b", created, 7.0)
    cluster.ready_replicas = 2
    assert backend.ready_count() == 2
    cluster.pods[2] = pod("resnet-c", created, 3.0)
    cluster.ready_replicas = 3
    assert backend.ready_count() == 3
    lists = _pod_lists(api_server)
    assert backend.ready_count() == 3  # nothing changed: no pod listing, no event recorded twice
    assert _pod_lists(api_server) == lists

    with session_factory(pg)() as session:
        assert repository.replica_startup_s(session, deployment_id) == pytest.approx(5.0)  # median of 7 and 3

    # The loop's lead time is the measured startup plus the margin.
    def factory(_row: DeploymentRow) -> ReplicaBackend:
        return backend

    loop = ReconcileLoop(pg, StoreSource(MetricsStore(pg)), backend_factory=factory, state_root=Path("/tmp"),
                         metrics=ControllerMetrics(CollectorRegistry()))  # fmt: skip
    decision = loop.reconcile_once(time.time())[NAME]
    assert decision.lead_time_s == pytest.approx(5.0 + ScalingPolicy().lead_time_margin_s)
    assert any("measured startup 5 s" in reason for reason in decision.reason_texts)
    loop.close()


def test_the_loop_keeps_the_spec_and_never_writes_a_rollouts_surge_pods_back(
    api_server: ApiServer, pg: Engine
) -> None:
    _deployment(pg)
    cluster = api_server.cluster
    cluster.replicas, cluster.surge, cluster.ready_replicas = 3, 2, 5  # 5 pods live for a spec of 3
    now = datetime.now(UTC)
    cluster.pods = [pod(f"resnet-{i}", now - timedelta(minutes=1), 5.0) for i in range(5)]
    backend = _backend(api_server, pg)

    def factory(_row: DeploymentRow) -> ReplicaBackend:
        return backend

    loop = ReconcileLoop(pg, StoreSource(MetricsStore(pg)), backend_factory=factory, state_root=Path("/tmp"),
                         metrics=ControllerMetrics(CollectorRegistry()))  # fmt: skip
    # No fresh metrics and no forecast: decide() keeps "the current count", which must be the spec's 3.
    started = time.time()
    decision = loop.reconcile_once(started)[NAME]
    assert (decision.desired, decision.source) == (3, "hold")
    status = loop.status(NAME)
    assert status is not None and (status["current_replicas"], status["ready_replicas"]) == (3, 5)

    # The rollout ends (3 pods). Had the surge been counted, the scale-down window would now hold 5 and write it.
    cluster.surge, cluster.ready_replicas, cluster.pods = 0, 3, cluster.pods[:3]
    store = MetricsStore(pg)
    now = time.time()
    store.insert_samples([Sample(NAME, "cpu_percent", now - i, 50.0) for i in range(60)])
    decision = loop.reconcile_once(max(now, started + 6))[NAME]
    assert decision.desired == 3, decision.reason_texts
    assert cluster.patches() == []  # nothing written, in particular never 5
    loop.close()
