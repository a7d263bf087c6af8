"""One simulation run: every policy on the same per-second arrivals and cluster model, and the goals checked."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from controller.policy import ScalingPolicy
from controller.simulation.baselines import (
    HpaAutoscaler,
    KpaAutoscaler,
    oracle_schedule,
    static_peak_replicas,
)
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import PolicyRun, simulate_closed_loop, simulate_schedule
from controller.simulation.metrics import PolicyResult, Surge, find_surges, summarise
from controller.simulation.prewarm_policy import PrewarmAutoscaler
from controller.simulation.workload import Workload

log = logging.getLogger(__name__)

POLICY_NAMES = ("static-peak", "hpa", "kpa", "prewarm", "hpa-tuned", "oracle")
HPA_TUNED_TARGETS = tuple(round(0.30 + 0.05 * k, 2) for k in range(9))  # 0.30 .. 0.70
BASELINE_TARGET_UTILISATION = 0.7  # HPA's and Knative's usual target, and the static-peak plan


@dataclass(frozen=True)
class Goal:
    name: str
    met: bool
    detail: str
    figure: str = ""  # the deciding figure in a few characters, for tables across traces


@dataclass
class SimulationResult:
    workload: Workload
    cluster: ClusterModel
    policy: ScalingPolicy
    runs: dict[str, PolicyRun]
    results: dict[str, PolicyResult]
    surges: list[Surge]
    static_replicas: int
    hpa_tuned_target: float | None
    prewarm_sources: dict[str, int] = field(default_factory=dict)
    prewarm_refits: int = 0
    prewarm_models: dict[str, int] = field(default_factory=dict)  # model -> forecasts it made
    elapsed_s: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        w = self.workload
        return {
            "policies": {name: r.as_json() for name, r in self.results.items()},
            "trace": {
                "name": w.name,
                "seconds": w.seconds,
                "trace_step_s": w.trace_step_s,
                "scale": w.scale,
                "requests": float(w.arrivals.sum()),
                "peak_interval_rps": round(w.peak_interval_rps, 3),
                "peak_second_rps": float(w.arrivals.max()),
                "surges": [{"t": s.t, "level_rps": round(s.level_rps, 1)} for s in self.surges],
            },
            "cluster": {
                "replica_capacity_rps": self.cluster.replica_capacity_rps,
                "startup_s": self.cluster.startup_s,
                "prewarm_s": self.cluster.prewarm_s,
                "scheduling_delay_s": self.cluster.scheduling_delay_s,
                "price_per_replica_hour": self.cluster.price_per_replica_hour,
                "slo_p95_ms": self.cluster.slo_p95_ms,
            },
            "static_peak_replicas": self.static_replicas,
            "hpa_tuned_target_utilisation": self.hpa_tuned_target,
            "prewarm": {
                "decision_sources": self.prewarm_sources,
                "forecast_refits": self.prewarm_refits,
                "forecast_models": self.prewarm_models,
            },
            "elapsed_s": {k: round(v, 2) for k, v in self.elapsed_s.items()},
            "goals": [{"goal": g.name, "met": g.met, "detail": g.detail} for g in self.goals()],
        }

    def goals(self) -> list[Goal]:
        """The issue's goals for prewarm, each with the figures that decide it."""
        r = self.results
        if "prewarm" not in r:
            return []
        p = r["prewarm"]
        goals: list[Goal] = []

        def ratio_goal(name: str, other: str, limit: float, below: bool) -> None:
            if other not in r or r[other].cost <= 0:
                return
            ratio = p.cost / r[other].cost
            met = ratio <= limit
            goals.append(
                Goal(
                    name, met, f"prewarm / {other} cost = {ratio:.3f} (goal <= {limit:.2f})", f"{ratio:.3f}x"
                )
            )

        ratio_goal("cost at least 40 % below static-peak", "static-peak", 0.60, True)
        share = p.violation_share
        goals.append(
            Goal(
                "SLO-violating seconds <= 0.1 % of the trace",
                share <= 0.001,
                f"{100 * share:.3f} % ({p.slo_violation_s} s)",
                f"{100 * share:.3f} %, {p.slo_violation_s} s",
            )
        )
        for other in ("hpa", "kpa"):
            if other in r:
                goals.append(
                    Goal(
                        f"SLO-violating seconds no more than {other}'s",
                        p.slo_violation_s <= r[other].slo_violation_s,
                        f"prewarm {p.slo_violation_s} s vs {other} {r[other].slo_violation_s} s",
                        f"{p.slo_violation_s} vs {r[other].slo_violation_s} s",
                    )
                )
        if "hpa" in r and r["hpa"].cost > 0:
            ratio = p.cost / r["hpa"].cost
            no_worse = p.slo_violation_s <= r["hpa"].slo_violation_s
            goals.append(
                Goal(
                    "cost <= 0.85x hpa's at no more violating seconds (smooth traces)",
                    ratio <= 0.85 and no_worse,
                    f"prewarm / hpa cost = {ratio:.3f} (goal <= 0.85), violating s {p.slo_violation_s} vs "
                    f"{r['hpa'].slo_violation_s}",
                    f"{ratio:.3f}x, {p.slo_violation_s} vs {r['hpa'].slo_violation_s} s",
                )
            )
        ratio_goal("cost within 15 % of oracle", "oracle", 1.15, False)
        ratio_goal("cost at least 15 % below hpa-tuned", "hpa-tuned", 0.85, True)
        goals.append(
            Goal(
                "mean utilisation >= 70 %",
                p.mean_utilisation >= 0.70,
                f"{100 * p.mean_utilisation:.1f} %",
                f"{100 * p.mean_utilisation:.1f} %",
            )
        )
        return goals


def _initial_replicas(workload: Workload, cluster: ClusterModel, min_replicas: int) -> int:
    """Every closed-loop policy starts warm: enough replicas for the first minute at 70 % utilisation."""
    first = float(workload.arrivals[:60].mean()) if workload.seconds else 0.0
    return max(
        min_replicas, math.ceil(first / (cluster.replica_capacity_rps * BASELINE_TARGET_UTILISATION) - 1e-9)
    )


def simulation_policy(policy: ScalingPolicy, cluster: ClusterModel, static_replicas: int) -> ScalingPolicy:
    """The policy as simulated: capacity, price and max replicas follow the cluster unless the file sets them."""
    update: dict[str, object] = {}
    if "replica_capacity_rps" not in policy.model_fields_set:
        update["replica_capacity_rps"] = cluster.replica_capacity_rps
    if "price_per_replica_hour" not in policy.model_fields_set:
        update["price_per_replica_hour"] = cluster.price_per_replica_hour
    if "max_replicas" not in policy.model_fields_set:
        update["max_replicas"] = max(policy.max_replicas, 3 * static_replicas)
    return policy.model_copy(update=update)


def run_simulation(
    workload: Workload,
    cluster: ClusterModel,
    policy: ScalingPolicy | None = None,
    policies: tuple[str, ...] = POLICY_NAMES,
) -> SimulationResult:
    """Replay ``workload`` through each named policy on identical inputs and summarise them."""
    unknown = set(policies) - set(POLICY_NAMES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; known: {', '.join(POLICY_NAMES)}")
    static_n = static_peak_replicas(
        workload.peak_interval_rps, cluster.replica_capacity_rps, BASELINE_TARGET_UTILISATION
    )
    sim_policy = simulation_policy(policy or ScalingPolicy(), cluster, static_n)
    low, high = sim_policy.min_replicas, sim_policy.max_replicas
    initial = min(high, _initial_replicas(workload, cluster, low))
    arrivals = workload.arrivals
    n = workload.seconds
    surges = find_surges(arrivals)
    runs: dict[str, PolicyRun] = {}
    elapsed: dict[str, float] = {}
    prewarm_sources: dict[str, int] = {}
    prewarm_models: dict[str, int] = {}
    refits = 0

    def timed(name: str, make: object) -> None:
        start = time.perf_counter()
        runs[name] = make()  # type: ignore[operator]
        elapsed[name] = time.perf_counter() - start
        log.info("simulated %s in %.1f s", name, elapsed[name])

    if "static-peak" in policies:
        timed(
            "static-peak",
            lambda: simulate_schedule(
                "static-peak", workload, cluster, np.full(n, float(static_n)), np.full(n, float(static_n)), 0
            ),
        )
    want_hpa = "hpa" in policies or "hpa-tuned" in policies
    if want_hpa:
        timed(
            "hpa",
            lambda: simulate_closed_loop(
                HpaAutoscaler(BASELINE_TARGET_UTILISATION), workload, cluster, initial, low, high
            ),
        )
    if "kpa" in policies:
        timed(
            "kpa",
            lambda: simulate_closed_loop(
                KpaAutoscaler(cluster.replica_capacity_rps), workload, cluster, initial, low, high
            ),
        )
    if "prewarm" in policies:
        autoscaler = PrewarmAutoscaler(sim_policy)
        timed("prewarm", lambda: simulate_closed_loop(autoscaler, workload, cluster, initial, low, high))
        prewarm_sources = dict(autoscaler.sources)
        prewarm_models = dict(autoscaler.models)
        refits = autoscaler.refits
        if autoscaler.band_log:
            at = np.array([row[0] for row in autoscaler.band_log])
            for column, key in enumerate(("forecast_lower_rps", "forecast_point_rps", "forecast_upper_rps")):
                series = np.full(n, np.nan)
                series[at] = [row[column + 1] for row in autoscaler.band_log]
                runs["prewarm"].extras[key] = series
    if "oracle" in policies:

        def oracle() -> PolicyRun:
            schedule = oracle_schedule(arrivals, cluster, max(1, low))
            return simulate_schedule(
                "oracle", workload, cluster, schedule.ready, schedule.billed, schedule.actions
            )

        timed("oracle", oracle)

    results = {name: summarise(run, arrivals, cluster, surges) for name, run in runs.items()}
    tuned_target: float | None = None
    if "hpa-tuned" in policies:
        start = time.perf_counter()
        reference = results["prewarm"].violation_share if "prewarm" in results else 0.0
        best: tuple[float, PolicyRun, PolicyResult] | None = None
        for target in sorted(HPA_TUNED_TARGETS, reverse=True):
            if target == BASELINE_TARGET_UTILISATION:
                run = runs["hpa"]
            else:
                run = simulate_closed_loop(HpaAutoscaler(target), workload, cluster, initial, low, high)
            result = summarise(run, arrivals, cluster, surges)
            if result.violation_share <= reference:
                best = (target, run, result)
                break
            best = (target, run, result)  # keeps the lowest target if none matches
        assert best is not None
        target, run, result = best
        tuned_target = target if result.violation_share <= reference else None
        runs["hpa-tuned"] = dataclasses.replace(run, name="hpa-tuned")
        results["hpa-tuned"] = PolicyResult(**{**result.__dict__, "name": "hpa-tuned"})
        elapsed["hpa-tuned"] = time.perf_counter() - start
        if tuned_target is None:
            log.warning(
                "no HPA target in 0.30-0.70 reaches prewarm's violation share; hpa-tuned shows target 0.30"
            )
    if "hpa" not in policies:
        runs.pop("hpa", None)
        results.pop("hpa", None)
    order = [p for p in POLICY_NAMES if p in results]
    return SimulationResult(
        workload=workload,
        cluster=cluster,
        policy=sim_policy,
        runs={k: runs[k] for k in order},
        results={k: results[k] for k in order},
        surges=surges,
        static_replicas=static_n,
        hpa_tuned_target=tuned_target,
        prewarm_sources=prewarm_sources,
        prewarm_refits=refits,
        prewarm_models=prewarm_models,
        elapsed_s=elapsed,
    )
