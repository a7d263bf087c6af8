"""The demo's closing table: what the live stack did beside what the simulator predicts for the same replay."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from controller.simulation.cluster import DEFAULT_SLO_P95_MS
from controller.simulation.metrics import SurgeRule
from prewarm import metric_names as m
from prewarm.demo import live
from prewarm.demo.replay import ReplayPlan, per_second

if TYPE_CHECKING:
    from prewarm.demo.run import DemoOptions, ReplayOutcome

# The simulator's surge metric, with windows for a day replayed in minutes (in trace seconds; compressed below):
# a rise by a quarter of the peak within an hour, surges two hours apart, leads measured over the whole day. The
# simulator's own 10-minute rise window would shrink to a second or two, shorter than a replayed second averages.
DEMO_SURGE_RULE = SurgeRule(
    rise_window_s=3600, separation_s=7200, lookback_s=86_400, smoothing_s=360, sample_step_s=360
)


@dataclass(frozen=True)
class Figures:
    served: float
    errors: float
    p95_ms: float
    replica_minutes: float
    static_replica_minutes: float
    violation_share: float
    surge_leads: list[float | None]
    violating_at: list[int] = field(default_factory=list)  # replay seconds over the SLO (or with a failure)

    @property
    def saving(self) -> float:
        return (
            1 - self.replica_minutes / self.static_replica_minutes
            if self.static_replica_minutes
            else math.nan
        )

    @property
    def surges_covered_before(self) -> int:
        return sum(1 for lead in self.surge_leads if lead is not None and lead <= 0)


def compare(
    engine: Any, store: Any, plan: ReplayPlan, options: DemoOptions, outcome: ReplayOutcome
) -> tuple[Figures, Figures, str]:
    """Live figures, simulated figures for the same replay, and the table that shows them side by side."""
    live_figures = live_run(engine, store, plan, options, outcome)
    startup_s = live.replica_startup_s(engine, "digits") or 2.0
    simulated = simulate(plan, options, startup_s, outcome.started_at)
    return live_figures, simulated, table(live_figures, simulated, plan, options, startup_s, outcome)


def surge_leads(
    demand: np.ndarray, ready: np.ndarray, capacity_rps: float, plan: ReplayPlan
) -> list[float | None]:
    """Lead of capacity over each surge of the replayed demand, by the simulator's own surge functions."""
    from controller.simulation.metrics import find_surges, surge_lead_s

    rule = DEMO_SURGE_RULE.compressed(plan.compression)
    return [surge_lead_s(ready, capacity_rps, surge, rule) for surge in find_surges(demand, rule)]


def static_replicas(plan: ReplayPlan, options: DemoOptions) -> int:
    from controller.simulation.baselines import static_peak_replicas

    return static_peak_replicas(
        float(plan.live_rates_rps().max()), options.capacity_rps, options.target_utilisation
    )


def live_run(
    engine: Any, store: Any, plan: ReplayPlan, options: DemoOptions, outcome: ReplayOutcome
) -> Figures:
    seconds = outcome.seconds
    ok = outcome.status == 200
    latencies = np.where(np.isnan(outcome.latency_s), np.inf, outcome.latency_s)
    billed = live.billed_replica_seconds(engine, "digits", outcome.started_at, outcome.started_at + seconds)
    ready = live.per_second_series(store, "digits", m.READY_REPLICAS, outcome.started_at, seconds)
    ready = np.nan_to_num(ready, nan=0.0)
    demand = per_second(plan.live_rates_rps(), plan.interval_replay_s)
    violating = live.violating_seconds(
        outcome.intended_s, outcome.latency_s, outcome.status, seconds, DEFAULT_SLO_P95_MS
    )
    return Figures(
        served=float(ok.sum()),
        errors=float((~ok).sum()),
        p95_ms=float(np.percentile(latencies, 95)) * 1000 if latencies.size else math.nan,
        replica_minutes=float(billed.sum()) / 60,
        static_replica_minutes=static_replicas(plan, options) * seconds / 60,
        violation_share=float(violating.mean()) if seconds else 0.0,
        surge_leads=surge_leads(demand, ready, options.capacity_rps, plan),
        violating_at=[int(s) for s in np.flatnonzero(violating)],
    )


def simulate(plan: ReplayPlan, options: DemoOptions, startup_s: float, live_start: float) -> Figures:
    """The same replay through the simulator: seeded history, then the live day, prewarm's policy and cluster."""
    from controller.policy import ScalingPolicy
    from controller.simulation import ClusterModel, run_simulation
    from controller.simulation.metrics import violating_seconds
    from controller.simulation.workload import Workload
    from prewarm.demo.run import demo_policy

    history = per_second(plan.history_rates_rps(), plan.interval_replay_s)
    demand = per_second(plan.live_rates_rps(), plan.interval_replay_s)
    arrivals = np.concatenate([history, demand])
    workload = Workload(
        "demo replay", live_start - len(history), arrivals, plan.scale, 1, float(plan.live_rates_rps().max())
    )
    cluster = ClusterModel(
        replica_capacity_rps=options.capacity_rps, prewarm_s=startup_s, scheduling_delay_s=0.0
    )
    result = run_simulation(workload, cluster, ScalingPolicy(**demo_policy(options)), ("prewarm",))
    run = result.runs["prewarm"]
    live_part = slice(len(history), len(arrivals))
    sliced = type(run)(
        run.name, run.ready[live_part], run.billed[live_part], run.served[live_part], run.queue[live_part],
        run.dropped[live_part], run.p95_ms[live_part], run.actions,
    )  # fmt: skip
    violating = violating_seconds(sliced, demand, cluster)
    seconds = len(demand)
    finite_p95 = sliced.p95_ms[np.isfinite(sliced.p95_ms)]
    return Figures(
        served=float(sliced.served.sum()),
        errors=float(sliced.dropped.sum()),
        p95_ms=float(np.percentile(finite_p95, 95)) if finite_p95.size else math.nan,
        replica_minutes=float(sliced.billed.sum()) / 60,
        static_replica_minutes=static_replicas(plan, options) * seconds / 60,
        violation_share=float(violating.mean()),
        surge_leads=surge_leads(demand, sliced.ready, options.capacity_rps, plan),
        violating_at=[int(s) for s in np.flatnonzero(violating)],
    )


def table(
    live_figures: Figures, sim: Figures, plan: ReplayPlan, options: DemoOptions, startup_s: float,
    outcome: ReplayOutcome,
) -> str:  # fmt: skip
    def row(label: str, a: str, b: str) -> str:
        return f"| {label} | {a} | {b} |"

    def leads(f: Figures) -> str:
        shown = ", ".join("never" if x is None else f"{x:+.0f} s" for x in f.surge_leads) or "no surge"
        return f"{f.surges_covered_before} of {len(f.surge_leads)} ({shown})"

    lines = [
        f"Replay: {plan.trace.name} day {options.live_day}, x{plan.scale:.1f} rates, {plan.compression:g}x faster; "
        f"replica capacity {options.capacity_rps:g} rps (service time {options.service_time_ms:g} ms, one request "
        f"at a time), measured startup {startup_s:.1f} s.",
        "",
        "| figure | live stack | simulator (same replay) |",
        "|---|---:|---:|",
        row("requests served", f"{live_figures.served:,.0f}", f"{sim.served:,.0f}"),
        row("errors / dropped", f"{live_figures.errors:,.0f}", f"{sim.errors:,.0f}"),
        row("p95 latency (all requests / per-second estimate)", f"{live_figures.p95_ms:.1f} ms", f"{sim.p95_ms:.1f} ms"),
        row("replica-minutes", f"{live_figures.replica_minutes:.1f}", f"{sim.replica_minutes:.1f}"),
        row("static provisioning for the peak, replica-minutes", f"{live_figures.static_replica_minutes:.1f}",
            f"{sim.static_replica_minutes:.1f}"),
        row("saving vs static", f"{100 * live_figures.saving:.0f} %", f"{100 * sim.saving:.0f} %"),
        row("SLO-violating seconds (share)", f"{100 * live_figures.violation_share:.1f} %",
            f"{100 * sim.violation_share:.1f} %"),
        row("surges with capacity ready before them", leads(live_figures), leads(sim)),
    ]  # fmt: skip
    return "\n".join([*lines, "", *slip_lines(outcome, plan, options)])


# The replay is trustworthy while its own timing holds: requests leave within a replayed trace interval of their
# intended time, and the controller decides within half its decision interval of when a decision was due.
SLIP_LOADGEN_SHARE = 0.5  # of one replayed trace interval
SLIP_DECISION_SHARE = 0.5  # of the decision interval
# A replica's fastest requests take its service time plus a little HTTP: when even the fastest tenth take half as long
# again, the replicas themselves are short of CPU (another job shares the machine), which the simulator cannot know.
SLOW_SERVICE_FACTOR = 1.5


def slip_lines(outcome: ReplayOutcome, plan: ReplayPlan, options: DemoOptions) -> list[str]:
    """How late the load generator and the controller ran against the replay clock, and a warning when that
    makes the live-vs-simulator comparison untrustworthy (the simulator's clock never slips)."""
    from controller.loop_metrics import histogram_quantile
    from prewarm.demo.run import demo_policy

    slip = outcome.send_slip_s
    send_p50, send_p99 = (float(np.percentile(slip, q)) for q in (50, 99)) if slip.size else (math.nan, math.nan)
    buckets, count = outcome.decision_lag
    lag_p50, lag_p99 = (histogram_quantile(buckets, count, q) for q in (0.5, 0.99))
    interval = float(demo_policy(options)["decision_interval_s"])
    send_limit, lag_limit = SLIP_LOADGEN_SHARE * plan.interval_replay_s, SLIP_DECISION_SHARE * interval
    lines = [
        f"Replay timing: requests left p50 {1000 * send_p50:.0f} ms / p99 {1000 * send_p99:.0f} ms after their "
        f"intended time (limit {1000 * send_limit:.0f} ms, half a replayed trace interval); the controller decided "
        f"p50 {1000 * lag_p50:.0f} ms / p99 {1000 * lag_p99:.0f} ms after due (limit {1000 * lag_limit:.0f} ms, half "
        f"its {interval:g} s interval)."
    ]
    ok = outcome.latency_s[(outcome.status == 200) & np.isfinite(outcome.latency_s)] if outcome.latency_s.size else None
    fastest_ms = 1000 * float(np.percentile(ok, 10)) if ok is not None and ok.size else math.nan
    service_limit_ms = SLOW_SERVICE_FACTOR * options.service_time_ms
    load1, cores = os.getloadavg()[0], os.cpu_count() or 1
    lines.append(
        f"Replica speed: the fastest tenth of requests took <= {fastest_ms:.0f} ms (service time "
        f"{options.service_time_ms:g} ms, limit {service_limit_ms:.0f} ms); load average {load1:.1f} on {cores} cores."
    )
    late = [what for what, value, limit in (("the load generator", send_p99, send_limit),
                                             ("the controller", lag_p99, lag_limit)) if value > limit]  # fmt: skip
    if fastest_ms > service_limit_ms:
        lines.append(
            f"WARNING: the replicas ran slower than their service time (another job shares the machine's {cores} "
            "cores?): live latency and violating seconds measure the machine, not the policy, and cannot match the "
            "simulator's. Re-run on a quiet machine to compare."
        )
    if late:
        lines.append(
            f"WARNING: {' and '.join(late)} ran late against the replay clock (another job shares the machine?): "
            "the live column is not a faithful run of the replay, so it may differ from the simulator for that "
            "reason alone. Re-run on a quiet machine to compare."
        )
    return lines
