"""Scale to zero in the simulator: prewarm with and without zero against Knative's KPA and the HPA on one workload.

Every policy runs in the same engine on the same per-second arrivals; while no replica is ready the engine's queue
is the activator (requests are held, none is lost within ``max_wait_s``), and prewarm's ``decide()`` sees the held
count as ``Observations.held_requests`` (``controller.simulation.prewarm_policy.held_requests``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from controller.policy import ScalingPolicy
from controller.simulation.baselines import HpaAutoscaler, KpaAutoscaler, static_peak_replicas
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import Autoscaler, PolicyRun, simulate_closed_loop
from controller.simulation.metrics import ColdStarts, cold_starts, violating_seconds
from controller.simulation.prewarm_policy import PrewarmAutoscaler
from controller.simulation.run import BASELINE_TARGET_UTILISATION, simulation_policy
from controller.simulation.workload import Workload
from controller.simulation.zero_bound import ZeroFrontier

ZERO_POLICIES = ("prewarm-min1", "prewarm-zero", "kpa-zero", "hpa-min1")
COST_GOAL = 0.60  # prewarm with zero at least 40 % cheaper than prewarm with min 1
COLD_START_GOAL = 5.0  # at least 5x fewer cold-started requests than KPA with scale to zero


@dataclass(frozen=True)
class ZeroRow:
    name: str
    replica_hours: float
    cost: float
    cold: ColdStarts
    slo_violation_s: int
    zero_share: float  # share of the trace's seconds with no replica asked for
    actions: int
    elapsed_s: float


@dataclass(frozen=True)
class ZeroComparison:
    workload: Workload
    rows: dict[str, ZeroRow]
    sources: dict[str, int]  # prewarm-zero's decision sources

    def goals(self) -> list[tuple[str, bool, str]]:
        r = self.rows
        out: list[tuple[str, bool, str]] = []
        if "prewarm-zero" in r and "prewarm-min1" in r and r["prewarm-min1"].cost > 0:
            ratio = r["prewarm-zero"].cost / r["prewarm-min1"].cost
            out.append(
                (
                    "prewarm-zero >= 40 % cheaper than prewarm-min1",
                    ratio <= COST_GOAL,
                    f"{ratio:.3f}x (goal <= {COST_GOAL:.2f}x)",
                )
            )
        if "prewarm-zero" in r and "kpa-zero" in r:
            ours, theirs = r["prewarm-zero"].cold.requests, r["kpa-zero"].cold.requests
            factor = theirs / ours if ours > 0 else float("inf")
            out.append(
                (
                    "prewarm-zero >= 5x fewer cold-started requests than kpa-zero",
                    ours * COLD_START_GOAL <= theirs,
                    f"{ours:.0f} vs {theirs:.0f} ({factor:.1f}x fewer)",
                )
            )
        return out


@dataclass(frozen=True)
class BoundCheck:
    """The goals against the rate oracle's frontier (controller/simulation/zero_bound.py) on the same workload.

    The cost goal is read as a share of time at zero: with a peak of one replica (every sparse trace here) each
    second at zero saves the one replica prewarm with min 1 pays, so the goal needs ``1 - COST_GOAL`` of min 1's
    replica-hours at zero."""

    period_s: int
    zero_share_needed: float  # share of the span at zero the cost goal needs
    cold_at_goal: float | None  # the oracle's fewest expected cold starts for that share (None: beyond)
    cold_limit: float | None  # what the cold-start goal allows: kpa-zero's measured count / COLD_START_GOAL
    zero_share_ours: float | None  # prewarm-zero's measured share at zero
    cold_at_ours: float | None  # the oracle's fewest expected cold-started requests at prewarm-zero's share

    @property
    def reachable(self) -> bool | None:
        """Whether a policy knowing the hourly rate could meet both goals at once (in expectation)."""
        if self.cold_limit is None:
            return None
        return self.cold_at_goal is not None and self.cold_at_goal <= self.cold_limit

    def lines(self) -> list[str]:
        """The check as Markdown list items."""
        hours = (
            f"{self.period_s / 3600:g} h" if self.period_s % 3600 == 0 else f"{self.period_s / 60:.0f} min"
        )
        need = f"{100 * self.zero_share_needed:.1f} % of the time at zero"
        best = (
            "not reachable even at zero in every period"
            if self.cold_at_goal is None
            else f"at least {self.cold_at_goal:.0f} expected cold-started requests"
        )
        out = [f"rate oracle (knows each {hours} period's rate): {need} (the cost goal) costs {best}"]
        if self.cold_limit is not None:
            verdict = {True: "reachable", False: "NOT reachable", None: "-"}[self.reachable]
            out.append(f"both goals together: {verdict} (the cold-start goal allows {self.cold_limit:.0f})")
        if self.zero_share_ours is not None and self.cold_at_ours is not None:
            out.append(
                f"at prewarm-zero's {100 * self.zero_share_ours:.1f} % at zero the oracle needs "
                f"{self.cold_at_ours:.0f} cold-started requests"
            )
        return out


def bound_check(result: ZeroComparison, frontier: ZeroFrontier, period_s: int) -> BoundCheck:
    """Where the goals and prewarm-zero's measured figures sit against ``frontier`` (the same workload's)."""
    r = result.rows
    span_h = result.workload.seconds / 3600.0
    min1 = r["prewarm-min1"].replica_hours if "prewarm-min1" in r else span_h
    need = (1 - COST_GOAL) * min1 / span_h if span_h > 0 else 0.0
    limit = r["kpa-zero"].cold.requests / COLD_START_GOAL if "kpa-zero" in r else None
    ours = r["prewarm-zero"].zero_share if "prewarm-zero" in r else None
    return BoundCheck(
        period_s,
        need,
        frontier.min_cold(need),
        limit,
        ours,
        frontier.min_cold(ours) if ours is not None else None,
    )


def _autoscaler(name: str, policy: ScalingPolicy, cluster: ClusterModel) -> tuple[Autoscaler, int]:
    if name == "prewarm-min1":
        return PrewarmAutoscaler(policy.model_copy(update={"min_replicas": 1}), name=name), 1
    if name == "prewarm-zero":
        return PrewarmAutoscaler(policy.model_copy(update={"min_replicas": 0}), name=name), 0
    if name == "kpa-zero":
        return KpaAutoscaler(cluster.replica_capacity_rps, name=name, scale_to_zero=True), 0
    if name == "hpa-min1":
        return HpaAutoscaler(BASELINE_TARGET_UTILISATION, name=name), 1
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(ZERO_POLICIES)}")


def row(run: PolicyRun, workload: Workload, cluster: ClusterModel, elapsed_s: float) -> ZeroRow:
    hours = float(run.billed.sum()) / 3600.0
    return ZeroRow(
        run.name,
        hours,
        hours * cluster.price_per_replica_hour,
        cold_starts(run.ready, workload.arrivals),
        int(violating_seconds(run, workload.arrivals, cluster).sum()),
        float(np.mean(run.billed <= 0)) if run.billed.size else 0.0,
        run.actions,
        elapsed_s,
    )


def run_zero(
    workload: Workload,
    cluster: ClusterModel,
    policy: ScalingPolicy | None = None,
    policies: tuple[str, ...] = ZERO_POLICIES,
) -> ZeroComparison:
    """Each policy of ``policies`` on ``workload``; every run starts with one ready replica."""
    static_n = static_peak_replicas(
        workload.peak_interval_rps, cluster.replica_capacity_rps, BASELINE_TARGET_UTILISATION
    )
    base = simulation_policy(policy or ScalingPolicy(), cluster, static_n)
    rows: dict[str, ZeroRow] = {}
    sources: dict[str, int] = {}
    for name in policies:
        autoscaler, low = _autoscaler(name, base, cluster)
        start = time.perf_counter()
        run = simulate_closed_loop(autoscaler, workload, cluster, 1, low, base.max_replicas)
        rows[name] = row(run, workload, cluster, time.perf_counter() - start)
        if name == "prewarm-zero" and isinstance(autoscaler, PrewarmAutoscaler):
            sources = dict(autoscaler.sources)
    return ZeroComparison(workload, rows, sources)


def table(result: ZeroComparison) -> str:
    """The comparison as a Markdown table."""

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        "| policy | replica-hours | cost | at zero | cold-started requests | added wait p50 / p95 s | "
        "SLO-violating s | actions |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.rows.values():
        lines.append(
            f"| {r.name} | {r.replica_hours:.1f} | {r.cost:.2f} | {100 * r.zero_share:.1f} % | "
            f"{r.cold.requests:.0f} | {seconds(r.cold.wait_p50_s)} / {seconds(r.cold.wait_p95_s)} | "
            f"{r.slo_violation_s} | {r.actions} |"
        )
    return "\n".join(lines)
