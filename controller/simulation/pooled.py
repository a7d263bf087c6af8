"""The simulator with capacity pools: per-pool startup and price, spot interruptions, the live placement step.

Each decision period the autoscaler's total goes through ``controller.placement.place`` (the step the live loop
runs), and every pool is scaled to its count. Spot interruptions are a seeded Poisson process per spot replica: a
ready spot replica gets a notice and leaves ``notice_s`` later; the notice is seen at the next decision, which
places its replacement at once (docs/cost.md). A *wave* (``waves_per_day``) takes every ready spot replica of a pool
at once: the case the placement's spot bound is for. Reserved pools are billed for their whole committed size.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from controller.decision_values import FloatArray
from controller.placement import place, without_holds
from controller.policy import ScalingPolicy
from controller.pools import CapacityPool, effective_pools
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import Autoscaler, ClusterView, PolicyRun, serve_period
from controller.simulation.metrics import violating_seconds
from controller.simulation.workload import Workload

HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class InterruptionModel:
    """Spot interruptions: ``per_month`` of the spot replicas are taken back per month, each with ``notice_s``.

    The rates follow the interruption-frequency bands of the AWS Spot Instance Advisor (share of instances of a
    type reclaimed in the trailing month: <5 %, 5-10 %, 10-15 %, 15-20 %, >20 %); AWS gives a 2-minute notice,
    GCP (preemption) and Azure (eviction) 30 seconds.
    """

    name: str
    per_month: float
    notice_s: int
    seed: int = 0
    waves_per_day: float = 0.0  # a Poisson process of waves, each taking every ready spot replica of a pool

    @property
    def per_replica_hour(self) -> float:
        return self.per_month / HOURS_PER_MONTH


NO_INTERRUPTIONS = InterruptionModel("none", 0.0, 120)


@dataclass
class PooledRun:
    """A policy's run with what each pool held and cost, and the interruptions it lived through."""

    run: PolicyRun
    billed_by_pool: dict[str, float]  # replica-seconds billed per pool
    cost_by_pool: dict[str, float]
    notices: list[tuple[int, int]] = field(default_factory=list)  # (second of the notice, second it left)
    reactive_need: FloatArray = field(default_factory=lambda: np.zeros(0))  # per second, what placement was told

    @property
    def cost(self) -> float:
        return sum(self.cost_by_pool.values())


@dataclass
class _Pool:
    spec: CapacityPool
    startup: int
    ready: int = 0
    pending: deque[int] = field(default_factory=deque)  # ready times, ascending
    leaving: list[int] = field(default_factory=list)  # second each leaving replica goes
    billed_s: float = 0.0


def simulate_pooled(
    autoscaler: Autoscaler,
    workload: Workload,
    cluster: ClusterModel,
    policy: ScalingPolicy,
    initial_replicas: int,
    interruptions: InterruptionModel = NO_INTERRUPTIONS,
) -> PooledRun:
    """Replay ``workload``: the autoscaler decides the total, ``place`` splits it, each pool follows its count."""
    rng = np.random.default_rng(interruptions.seed)
    arrivals = workload.arrivals
    n = len(arrivals)
    cumsum = np.concatenate(([0.0], np.cumsum(arrivals)))
    ready_series = np.zeros(n)
    billed = np.zeros(n)
    reactive = np.full(n, float(initial_replicas))
    served = arrivals.astype(np.float64, copy=True)
    queue = np.zeros(n)
    dropped = np.zeros(n)
    capacity_rps = cluster.replica_capacity_rps
    pools = [
        _Pool(p, math.ceil(p.startup_s) if p.startup_s else cluster.startup_s)
        for p in effective_pools(policy.pools, cluster.price_per_replica_hour)
    ]
    first = last = place(policy, initial_replicas, initial_replicas)
    for pool in pools:
        pool.ready = first.counts.get(pool.spec.name, 0)
    period = max(1, int(autoscaler.interval_s))
    period_max = np.maximum.reduceat(arrivals, np.arange(0, n, period)) if n else np.zeros(0)
    hazard = 1.0 - math.exp(-interruptions.per_replica_hour * period / 3600.0)
    wave_hazard = 1.0 - math.exp(-interruptions.waves_per_day * period / 86400.0)
    notices: list[tuple[int, int]] = []
    q = 0.0
    actions = 0
    for t in range(0, n, period):
        end = min(n, t + period)
        for pool in pools:
            while pool.pending and pool.pending[0] <= t:
                pool.pending.popleft()
                pool.ready += 1
            gone = [g for g in pool.leaving if g <= t]
            pool.ready -= len(gone)
            pool.leaving = [g for g in pool.leaving if g > t]
            if pool.spec.kind == "spot" and (hazard > 0 or wave_hazard > 0):
                staying = max(0, pool.ready - len(pool.leaving))
                hit = int(rng.binomial(staying, hazard)) if hazard > 0 else 0
                if wave_hazard > 0 and rng.random() < wave_hazard:
                    hit = staying
                for _ in range(hit):
                    pool.leaving.append(t + interruptions.notice_s)
                    notices.append((t, t + interruptions.notice_s))
        if t > 0:
            ready_now = sum(p.ready - len(p.leaving) for p in pools)
            starting = sum(len(p.pending) for p in pools)
            held = ready_now + starting - without_holds(ready_now + starting, last)
            view = ClusterView(
                t, workload.start_ts + t, arrivals[:t], cumsum[: t + 1], served[:t], queue[:t],
                ready_series[:t], ready_now, starting, cluster, held,
            )  # fmt: skip
            want = min(max(int(autoscaler.desired(view)), policy.min_replicas), policy.max_replicas)
            need = _reactive_need(autoscaler, want)
            reactive[t:end] = min(need, want)
            placement = last = place(
                policy,
                want,
                min(need, want),
                {p.spec.name: len(p.leaving) for p in pools},
                {p.spec.name: p.ready + len(p.pending) for p in pools},
                {p.spec.name: p.ready for p in pools},
            )
            changed = False
            for pool in pools:
                target = placement.scale_counts.get(pool.spec.name, 0)
                have = pool.ready + len(pool.pending)
                if target > have:
                    pool.pending.extend([t + pool.startup] * (target - have))
                    changed = True
                elif target < have:
                    remove = have - target
                    while remove and pool.pending:
                        pool.pending.pop()
                        remove -= 1
                    while remove and pool.leaving:  # they go anyway: first
                        pool.leaving.pop()
                        pool.ready -= 1
                        remove -= 1
                    pool.ready -= remove
                    changed = True
            actions += changed
        changes = [(r - t, 1.0) for p in pools for r in p.pending if r < end] + [
            (g - t, -1.0) for p in pools for g in p.leaving if g < end
        ]
        level = float(sum(p.ready for p in pools))
        for pool in pools:
            pool.billed_s += (
                float(pool.spec.max_replicas or 0) * (end - t)
                if pool.spec.kind == "reserved"
                else float(
                    (pool.ready + len(pool.pending)) * (end - t)
                    - sum(end - g for g in pool.leaving if g < end)
                )
            )
        billed[t:end] = sum(
            (p.spec.max_replicas or 0) if p.spec.kind == "reserved" else p.ready + len(p.pending)
            for p in pools
        )
        if not changes:
            ready_series[t:end] = level
            if q <= 0.0 and period_max[t // period] <= level * capacity_rps:
                continue
            seg = np.full(end - t, level)
        else:
            seg = np.full(end - t, level)
            for offset, delta in changes:
                seg[offset:] += delta
            ready_series[t:end] = seg
        q = serve_period(cluster, arrivals, seg, t, q, served, queue, dropped)
    p95 = cluster.p95_ms(served, ready_series, queue)
    run = PolicyRun(autoscaler.name, ready_series, billed, served, queue, dropped, p95, actions)
    billed_by_pool = {p.spec.name: p.billed_s for p in pools}
    cost_by_pool = {p.spec.name: p.billed_s / 3600.0 * p.spec.price_per_replica_hour for p in pools}
    return PooledRun(run, billed_by_pool, cost_by_pool, notices, reactive)


def _reactive_need(autoscaler: Autoscaler, want: int) -> int:
    """What the reactive path needs now: prewarm's decision says; another autoscaler's whole count is its need."""
    decision = getattr(autoscaler, "last_decision", None)
    if decision is not None and decision.reactive is not None:
        return int(decision.reactive)
    need = getattr(autoscaler, "reactive_need", None)
    return want if need is None else int(need)


def interruptions_survived(pooled: PooledRun, arrivals: FloatArray, cluster: ClusterModel) -> tuple[int, int]:
    """(notices, notices with no SLO-violating second from the notice until a minute after the replica left)."""
    bad = violating_seconds(pooled.run, arrivals, cluster)
    total = len(pooled.notices)
    survived = sum(1 for start, gone in pooled.notices if not bad[start : gone + 60].any())
    return total, survived
