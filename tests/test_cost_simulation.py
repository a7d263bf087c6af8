"""The pooled simulator: without pools it is the simulator; spot interruptions are replaced before they go."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.policy import ScalingPolicy
from controller.simulation.baselines import HpaAutoscaler
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import ClusterView, simulate_closed_loop
from controller.simulation.pooled import InterruptionModel, interruptions_survived, simulate_pooled
from controller.simulation.workload import Workload

CLUSTER = ClusterModel(replica_capacity_rps=100.0, prewarm_s=1.0, scheduling_delay_s=9.0)  # 10 s startup


def workload(seconds: int = 4 * 3600) -> Workload:
    rng = np.random.default_rng(3)
    t = np.arange(seconds)
    rate = 300 + 250 * np.sin(2 * np.pi * t / 3600.0)
    return Workload("wave", 0.0, rng.poisson(rate).astype(np.float64), 1.0, 1, float(rate.max()))


@dataclass
class Fixed:
    """Always asks for ``count`` replicas, of which the reactive path needs ``reactive_need``."""

    count: int
    reactive_need: int = 3
    name: str = "fixed"
    interval_s: int = 5

    def desired(self, view: ClusterView) -> int:
        return self.count


def test_without_pools_it_matches_the_single_pool_simulator() -> None:
    w = workload()
    policy = ScalingPolicy(
        min_replicas=1, max_replicas=30, price_per_replica_hour=CLUSTER.price_per_replica_hour
    )
    single = simulate_closed_loop(HpaAutoscaler(0.7), w, CLUSTER, 5, 1, 30)
    pooled = simulate_pooled(HpaAutoscaler(0.7), w, CLUSTER, policy, 5)
    np.testing.assert_array_equal(single.ready, pooled.run.ready)
    np.testing.assert_array_equal(single.billed, pooled.run.billed)
    assert pooled.billed_by_pool["on-demand"] == float(single.billed.sum())
    assert pooled.cost == float(single.billed.sum()) / 3600 * CLUSTER.price_per_replica_hour


def spot_policy() -> ScalingPolicy:
    return ScalingPolicy(
        min_replicas=1,
        max_replicas=30,
        spot_max_share=0.5,
        pools=[
            {"name": "reserved", "kind": "reserved", "price_per_replica_hour": 0.06, "max_replicas": 2},
            {"name": "spot", "kind": "spot", "price_per_replica_hour": 0.03},
            {"name": "on-demand", "kind": "on-demand", "price_per_replica_hour": 0.1},
        ],
    )


def test_interruptions_with_a_notice_longer_than_startup_never_lose_capacity() -> None:
    w = workload()
    model = InterruptionModel("storm", 730.0 * 2, notice_s=30, seed=5)  # two per spot replica-hour
    pooled = simulate_pooled(Fixed(10), w, CLUSTER, spot_policy(), 10, model)
    assert len(pooled.notices) > 20
    assert pooled.run.ready[60:].min() >= 10  # replaced (10 s startup + <= 5 s to see it) before each left
    notices, survived = interruptions_survived(pooled, w.arrivals, CLUSTER)
    assert survived == notices
    assert pooled.cost_by_pool["reserved"] == 2 * 0.06 * 4  # committed: paid for the whole 4 hours
    assert pooled.cost_by_pool["spot"] < pooled.cost_by_pool["on-demand"] * 2


def test_a_notice_shorter_than_startup_costs_capacity_but_not_below_the_non_spot_part() -> None:
    w = workload()
    model = InterruptionModel("storm", 730.0 * 2, notice_s=2, seed=5)
    pooled = simulate_pooled(Fixed(10), w, CLUSTER, spot_policy(), 10, model)
    assert pooled.run.ready[60:].min() < 10  # gaps while replacements start
    assert pooled.run.ready[60:].min() >= 5  # spot is at most half: the rest stays


def test_a_wave_takes_every_spot_replica_and_leaves_the_share_of_the_reactive_need() -> None:
    """Two waves an hour (seeded) with a 2-s notice: every spot replica goes before a replacement is ready. The
    reactive need (8 of 10) stays off spot with the default share; with a share of one half, half of it (4)."""
    w = workload()
    model = InterruptionModel("waves", 0.0, notice_s=2, seed=4, waves_per_day=48.0)
    for share, floor in ((1.0, 8), (0.5, 4)):
        policy = spot_policy().model_copy(update={"spot_max_share": 1.0, "spot_reactive_share": share})
        pooled = simulate_pooled(Fixed(10, reactive_need=8), w, CLUSTER, policy, 10, model)
        waves = sorted({start for start, _ in pooled.notices})
        assert len(waves) >= 2
        assert all(sum(1 for start, _ in pooled.notices if start == t) == 10 - floor for t in waves[1:])
        assert pooled.run.ready[60:].min() == floor  # the whole spot part gone at once, the floor stays


def test_the_interruption_process_is_seeded() -> None:
    w = workload(3600)
    model = InterruptionModel("storm", 730.0, notice_s=30, seed=9)
    a = simulate_pooled(Fixed(10), w, CLUSTER, spot_policy(), 10, model)
    b = simulate_pooled(Fixed(10), w, CLUSTER, spot_policy(), 10, model)
    assert a.notices == b.notices and a.cost == b.cost


@dataclass
class Holding(Fixed):
    """Keeps the count it sees (at least ``count``), as the thresholds' band does when the load sits inside it."""

    name: str = "holding"

    def desired(self, view: ClusterView) -> int:
        return max(self.count, view.current)


def test_replicas_kept_for_a_move_between_pools_are_not_seen_as_decided() -> None:
    # Placed first with everything on reserved and on-demand, then 5 of the 10 move to spot: on-demand keeps its
    # replicas until the spot ones are ready. The autoscaler sees the 10 it decided, never the 15 running meanwhile.
    pooled = simulate_pooled(Holding(10), workload(3600), CLUSTER, spot_policy(), 10)
    assert pooled.run.billed.max() == 15  # the move, make-before-break (paid while the spot replicas start)
    assert (pooled.run.ready[120:] == 10).all()
    assert pooled.run.billed[120:].max() == 10
