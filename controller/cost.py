"""What replicas cost: money per hour of a placement, cost over a time range from the decision log, and the
running meter behind the controller's cost metrics (docs/cost.md). Pure: no clock, no database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.policy import ScalingPolicy
from controller.pools import effective_pools


def on_demand_price(policy: ScalingPolicy) -> float:
    """The price the baselines pay: the cheapest on-demand pool, or the policy's price without pools."""
    prices = [
        p.price_per_replica_hour
        for p in effective_pools(policy.pools, policy.price_per_replica_hour)
        if p.kind == "on-demand"
    ]
    return min(prices) if prices else policy.price_per_replica_hour


def money_per_hour(policy: ScalingPolicy, counts: Mapping[str, int]) -> dict[str, float]:
    """Money per hour of each pool holding ``counts`` replicas; reserved pools cost their whole size."""
    out: dict[str, float] = {}
    for pool in effective_pools(policy.pools, policy.price_per_replica_hour):
        held = (pool.max_replicas or 0) if pool.kind == "reserved" else counts.get(pool.name, 0)
        out[pool.name] = held * pool.price_per_replica_hour
    return out


@dataclass(frozen=True)
class CostPoint:
    """Replicas per pool from ``ts`` (epoch seconds) until the next point; ``non_spot``: the placement's spot bound
    then (replicas kept off spot; None: not recorded, e.g. no spot pool)."""

    ts: float
    counts: Mapping[str, int]
    non_spot: int | None = None


@dataclass(frozen=True)
class CostReport:
    since: float
    until: float
    replica_seconds: dict[str, float]
    money: dict[str, float]
    on_demand_money: float  # the same replicas, all on demand
    static_peak_money: float  # the peak of the range held the whole range, on demand
    peak_replicas: int

    @property
    def total(self) -> float:
        return sum(self.money.values())

    def saving(self, baseline: float) -> float | None:
        return 1.0 - self.total / baseline if baseline > 0 else None


def cost_over(policy: ScalingPolicy, points: Sequence[CostPoint], since: float, until: float) -> CostReport:
    """Replica-seconds and money per pool over ``[since, until)``: each point's counts hold until the next (the
    last until ``until``); before the first point nothing is counted; reserved pools are paid for the whole range."""
    if until < since:
        raise ValueError("until must not be before since")
    pools = effective_pools(policy.pools, policy.price_per_replica_hour)
    seconds = {p.name: 0.0 for p in pools}
    peak = 0
    ordered = sorted(points, key=lambda p: p.ts)
    total_replica_s = 0.0
    for i, point in enumerate(ordered):
        start = max(since, point.ts)
        end = min(until, ordered[i + 1].ts if i + 1 < len(ordered) else until)
        if end <= start:
            continue
        total = sum(point.counts.values())
        peak = max(peak, total)
        total_replica_s += total * (end - start)
        for pool in pools:
            if pool.kind != "reserved":
                seconds[pool.name] += point.counts.get(pool.name, 0) * (end - start)
    span = until - since
    for pool in pools:
        if pool.kind == "reserved":
            seconds[pool.name] = float(pool.max_replicas or 0) * span
    money = {p.name: seconds[p.name] / 3600.0 * p.price_per_replica_hour for p in pools}
    price = on_demand_price(policy)
    return CostReport(
        since, until, seconds, money, total_replica_s / 3600.0 * price, peak * span / 3600.0 * price, peak
    )


@dataclass
class CostMeter:
    """The running cost of one deployment since the controller took it: fed each decision's placement."""

    started: float | None = None
    last_ts: float | None = None
    last_counts: dict[str, int] = field(default_factory=dict)
    money: dict[str, float] = field(default_factory=dict)
    on_demand_money: float = 0.0
    peak: int = 0

    def add(self, policy: ScalingPolicy, now: float, counts: Mapping[str, int]) -> None:
        """Account the time since the previous call at the previous counts, then hold ``counts``."""
        if self.started is None:
            self.started = now
        if self.last_ts is not None and now > self.last_ts:
            hours = (now - self.last_ts) / 3600.0
            for pool, rate in money_per_hour(policy, self.last_counts).items():
                self.money[pool] = self.money.get(pool, 0.0) + rate * hours
            self.on_demand_money += sum(self.last_counts.values()) * on_demand_price(policy) * hours
        self.last_ts = now
        self.last_counts = dict(counts)
        self.peak = max(self.peak, sum(counts.values()))

    def static_peak_money(self, policy: ScalingPolicy) -> float:
        if self.started is None or self.last_ts is None:
            return 0.0
        return self.peak * (self.last_ts - self.started) / 3600.0 * on_demand_price(policy)

    def savings(self, policy: ScalingPolicy) -> dict[str, float]:
        """1 - ours / baseline for the baselines with money spent so far."""
        ours = sum(self.money.values())
        out: dict[str, float] = {}
        for name, baseline in (
            ("static_peak", self.static_peak_money(policy)),
            ("on_demand", self.on_demand_money),
        ):
            if baseline > 0:
                out[name] = 1.0 - ours / baseline
        return out


def replicas_per_step(
    points: Sequence[CostPoint], since: float, until: float, step_s: float = 60.0
) -> tuple[list[int], list[int]]:
    """The total replicas in force at the start of each ``step_s`` of ``[since, until)`` and the part of them the
    spot bound kept off spot (the total where not recorded); steps before the first point are left out: the
    replicas a deployment ran, for the cost plan."""
    ordered = sorted(points, key=lambda p: p.ts)
    totals: list[int] = []
    non_spot: list[int] = []
    i = -1
    t = since
    while t < until:
        while i + 1 < len(ordered) and ordered[i + 1].ts <= t:
            i += 1
        if i >= 0:
            total = sum(ordered[i].counts.values())
            kept = ordered[i].non_spot
            totals.append(total)
            non_spot.append(total if kept is None else min(total, kept))
        t += step_s
    return totals, non_spot
