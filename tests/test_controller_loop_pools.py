"""The loop with capacity pools: it places decide()'s total, records the placement, acts per pool, replaces spot
replicas under an interruption notice (from the API or a draining node) and exports the cost metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select

from controller import cost_queries, repository
from controller.backends.base import DrainNotice, PoolCounts, ReplicaBackend
from controller.backends.dry_run import DryRunBackend
from controller.loop import ReconcileLoop
from controller.loop_metrics import ControllerMetrics
from controller.policy import ScalingPolicy
from controller.sources.store import StoreSource
from prewarm import metric_names as m
from prewarm.db.engine import session_factory
from prewarm.db.models import Deployment, ScalingDecision, SpotInterruption
from prewarm.db.store import MetricsStore, Sample

POOLS: list[dict[str, Any]] = [
    {"name": "reserved", "kind": "reserved", "price_per_replica_hour": 0.06, "max_replicas": 1},
    {"name": "spot", "kind": "spot", "price_per_replica_hour": 0.03},
    {"name": "on-demand", "kind": "on-demand", "price_per_replica_hour": 0.1},
]


class DrainingDryRun(DryRunBackend):
    """A dry-run backend that reports pods on draining nodes, as the Kubernetes pools backend does."""

    def __init__(self) -> None:
        super().__init__(initial_replicas=2)
        self.draining: list[DrainNotice] = []

    def drain_notices(self) -> list[DrainNotice]:
        return list(self.draining)


def _setup(engine: Engine, now: float) -> int:
    policy = ScalingPolicy(
        min_replicas=1, max_replicas=20, price_per_replica_hour=0.1, pools=POOLS, spot_max_share=1.0,
        budget_money_per_hour=5.0,
    )  # fmt: skip
    with session_factory(engine)() as session:
        deployment = repository.create_deployment(
            session, name="digits", model="digits_mlp", backend="dry-run", backend_config={}, min_replicas=1,
            max_replicas=20, price_per_replica_hour=0.1, policy=policy, author="test",
        )  # fmt: skip
        deployment_id = deployment.id
        # a floor of 12 above the reactive need of 8 (as a forecast's headroom would be): room for spot
        repository.create_override(
            session, deployment_id, kind="floor", value=12, starts_at=datetime.fromtimestamp(now - 10, UTC),
            ends_at=datetime.fromtimestamp(now + 600, UTC), reason="headroom", author="test",
        )  # fmt: skip
        session.commit()
    # load for 8 replicas (400 rps each at 70 %), whatever the count: the reactive need is 8
    store = MetricsStore(engine)
    store.insert_samples([Sample("digits", m.REQUESTS_RPS, now - i, 2240.0) for i in range(60)], now=now + 1)
    return deployment_id


def test_the_loop_places_records_acts_per_pool_and_replaces_interrupted_spot(engine: Engine) -> None:
    now = float(int(time.time()))
    deployment_id = _setup(engine, now)
    backend = DrainingDryRun()
    registry = CollectorRegistry()
    loop = ReconcileLoop(
        engine, StoreSource(MetricsStore(engine)), backend_factory=lambda d: backend, state_root=Path("/tmp"),
        metrics=ControllerMetrics(registry),
    )  # fmt: skip
    decision = loop.reconcile_once(now + 1)["digits"]
    assert (decision.desired, decision.reactive) == (12, 8) and decision.placement is not None
    counts = decision.placement.counts
    # reserved first, spot up to what the reactive need leaves (12 - 8), on-demand for the rest
    assert counts == {"reserved": 1, "spot": 4, "on-demand": 7}
    assert backend.requests[-1].pools == decision.placement.scale_counts
    with session_factory(engine)() as session:
        stored = session.scalars(select(ScalingDecision)).one()
        assert stored.placement == decision.placement.as_json()
        assert any(r.startswith("placement: ") for r in stored.reasons)
    per_hour = {
        pool: registry.get_sample_value("prewarm_cost_per_hour", {"deployment": "digits", "pool": pool})
        for pool in ("reserved", "spot", "on-demand")
    }
    assert per_hour == {
        "reserved": 0.06,
        "spot": 0.03 * counts["spot"],
        "on-demand": 0.1 * counts["on-demand"],
    }
    assert registry.get_sample_value("prewarm_budget_money_per_hour", {"deployment": "digits"}) == 5.0

    # A node being drained under one spot replica: it is replaced at once, on demand, and stored.
    spot_before = counts["spot"]
    assert spot_before > 0
    backend.draining = [DrainNotice("spot", "digits-spot-abc", "node n1 cordoned")]
    second = loop.reconcile_once(now + 7)["digits"]
    assert second.placement is not None
    assert second.placement.leaving == {"spot": 1}
    assert second.placement.counts["spot"] <= spot_before - 1  # a spot pool being taken back does not grow
    # at least the total; more while replicas moving off spot wait for their replacements (make-before-break)
    assert second.placement.total >= second.desired
    assert backend.requests[-1].pools == second.placement.scale_counts  # the leaving one still runs
    assert any("interruption" in r.step for r in second.reasons)
    with session_factory(engine)() as session:
        notice = session.scalars(select(SpotInterruption)).one()
        assert (notice.pool, notice.replica, notice.source) == ("spot", "digits-spot-abc", "kubernetes-drain")
    assert (
        registry.get_sample_value(
            "prewarm_spot_interruptions_total", {"deployment": "digits", "pool": "spot"}
        )
        == 1.0
    )
    total = registry.get_sample_value("prewarm_cost_total", {"deployment": "digits", "pool": "on-demand"})
    assert total is not None and total > 0  # six seconds at the first placement's on-demand count

    # A notice through the store (the API's path) counts as leaving too.
    backend.draining = []
    with session_factory(engine)() as session:
        cost_queries.record_interruption(
            session, deployment_id, "spot", count=2, notice_s=60, replica=None, source="api",
            now=datetime.fromtimestamp(now + 8, UTC),
        )  # fmt: skip
        session.commit()
    third = loop.reconcile_once(now + 13)["digits"]
    assert third.placement is not None and third.placement.leaving == {"spot": 3}


def test_without_pools_the_loop_scales_the_total_as_before(engine: Engine) -> None:
    now = float(int(time.time()))
    with session_factory(engine)() as session:
        repository.create_deployment(
            session, name="digits", model="digits_mlp", backend="dry-run", backend_config={}, min_replicas=1,
            max_replicas=20, price_per_replica_hour=0.1, policy=None, author="test",
        )  # fmt: skip
        session.commit()
    MetricsStore(engine).insert_samples(
        [Sample("digits", m.CPU_PERCENT, now - i, 280.0) for i in range(60)], now=now + 1
    )
    backends: dict[str, ReplicaBackend] = {}

    def factory(deployment: Deployment) -> ReplicaBackend:
        return backends.setdefault(deployment.name, DryRunBackend(initial_replicas=2))

    loop = ReconcileLoop(
        engine, StoreSource(MetricsStore(engine)), backend_factory=factory, state_root=Path("/tmp"),
        metrics=ControllerMetrics(CollectorRegistry()),
    )  # fmt: skip
    decision = loop.reconcile_once(now + 1)["digits"]
    backend = backends["digits"]
    assert isinstance(backend, DryRunBackend)
    assert backend.requests[-1].pools is None  # scale_to, not a placement
    assert decision.placement is not None and decision.placement.counts == {"on-demand": decision.desired}
    assert not any(r.step == "placement" for r in decision.reasons)


class SlowSpot(DryRunBackend):
    """A dry-run backend whose spot replicas are not ready until ``spot_ready`` says so; the rest ready at once."""

    def __init__(self, plan: dict[str, int]) -> None:
        super().__init__(initial_replicas=sum(plan.values()))
        self._pool_plan = dict(plan)
        self.spot_ready = 0

    def ready_count(self) -> int:
        return sum(c.ready for c in self.pool_counts().values())

    def pool_counts(self) -> dict[str, PoolCounts]:
        return {
            pool: PoolCounts(n, min(n, self.spot_ready) if pool == "spot" else n)
            for pool, n in self._pool_plan.items()
        }


def test_replicas_kept_for_a_move_between_pools_are_not_kept_by_the_next_decision(engine: Engine) -> None:
    now = float(int(time.time()))
    _setup(engine, now)  # a floor of 12
    # CPU inside the thresholds' band (between scale-down and scale-up): alone, the reactive path holds the count;
    # its ratio (50 % of 12 ready at a 70 % target) makes the reactive need 9, so 3 of the 12 may go to spot
    MetricsStore(engine).insert_samples(
        [Sample("digits", m.CPU_PERCENT, now - i, 50.0) for i in range(60)], now=now + 1
    )
    backend = SlowSpot({"reserved": 1, "spot": 0, "on-demand": 11})
    loop = ReconcileLoop(
        engine, StoreSource(MetricsStore(engine)), backend_factory=lambda d: backend, state_root=Path("/tmp"),
        metrics=ControllerMetrics(CollectorRegistry()),
    )  # fmt: skip
    first = loop.reconcile_once(now + 1)["digits"]
    assert first.desired == 12 and first.placement is not None
    # 3 go to spot; on-demand keeps its 11 until they are ready (make-before-break): the pools hold 15
    assert first.placement.counts == {"reserved": 1, "spot": 3, "on-demand": 11}
    assert first.placement.held == 3 and backend.desired_count() == 15
    # Still starting: the next decision sees the 12 it decided, not the 15 held; inside the thresholds' band it
    # keeps 12 (counting the held ones, the band kept 15 and every move raised the count for good).
    second = loop.reconcile_once(now + 7)["digits"]
    assert second.desired == 12, second.reason_texts
    assert second.placement is not None and second.placement.total == 15
    # Once the spot replicas are ready, the pools give back the ones held (the CPU, a fixed 50 % here, now reads
    # over 15 ready replicas: a larger reactive need, so fewer stay on spot).
    backend.spot_ready = 3
    third = loop.reconcile_once(now + 13)["digits"]
    assert third.desired == 12 and third.placement is not None and third.placement.held == 0
    assert third.placement.total == backend.desired_count() == 12
