"""Scale to zero in the simulator: sparse traces, prewarm with min 1 and with zero, Knative KPA with zero, HPA min 1.

    .venv/bin/python -m benchmarks.zero_sim [--traces nasa,code] [--per-minute 1.0 | 0.1,0.3,1] [--days D]
                                            [--forecast-model profile] [--oracle-period-s 3600]

The sparse traces are the shipped NASA July 1995 and Azure LLM code traces thinned (Poisson thinning, seeded) to a
mean of ``--per-minute`` requests per minute (controller/simulation/sparse.py; the rule is in docs/zero.md). Prints
per trace the thinning, one table of every policy (cost, share of time at zero, requests that met a cold start and
their added wait, SLO-violating seconds), the issue's goals, met or MISSED with the figure, and where the goals sit
against the rate oracle's frontier (controller/simulation/zero_bound.py: the fewest expected cold-started requests
for a share of time at zero, for a policy that knows each hour's rate). Several ``--per-minute`` values run each
trace at each sparsity and end with one summary table per trace. ``--days D``
simulates only the first D days of the thinned trace (the thinning itself is over the whole trace); the README runs
the first week of NASA (its daily and weekly rhythm once), as the whole 28 days take about 20 CPU-minutes per prewarm
policy on a busy machine.
"""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from controller.policy import ScalingPolicy
from controller.simulation.baselines import KpaAutoscaler
from controller.simulation.cluster import ClusterModel
from controller.simulation.sparse import (
    SPARSE_REQUESTS_PER_MINUTE,
    keep_for_mean_rate,
    period_rates,
    quietest_hour,
    thinned_arrivals,
)
from controller.simulation.workload import Workload
from controller.simulation.zero_bound import zero_frontier
from controller.simulation.zero_run import (
    COLD_START_GOAL,
    COST_GOAL,
    ZERO_POLICIES,
    BoundCheck,
    ZeroComparison,
    bound_check,
    run_zero,
    table,
)
from prewarm.traces import TRACES_DIR, Trace, load_trace

TRACES = {"nasa": "nasa_http_jul1995_1min.csv", "code": "azure_llm_code_2023_1s.csv"}


def sparse_workload(key: str, per_minute: float, days: float) -> tuple[Trace, Workload]:
    """The trace ``key`` thinned to ``per_minute`` (seeded: every call gives the same arrivals), its first days."""
    trace = load_trace(TRACES_DIR / TRACES[key])
    keep = keep_for_mean_rate(trace, per_minute)
    workload = thinned_arrivals(trace, keep)
    if days > 0 and workload.seconds > days * 86400:
        head = workload.arrivals[: round(days * 86400)]
        workload = Workload(
            workload.name, workload.start_ts, head, keep, workload.trace_step_s, workload.peak_interval_rps
        )
    return trace, workload


def run_one(key: str, per_minute: float, days: float, name: str, forecast_model: str) -> ZeroComparison:
    """One policy on one sparse workload (a worker process's job)."""
    _, workload = sparse_workload(key, per_minute, days)
    return run_zero(workload, ClusterModel(), ScalingPolicy(forecast_model=forecast_model), policies=(name,))


def print_level(
    key: str, per_minute: float, days: float, result: ZeroComparison, oracle_period_s: int, grace_s: float
) -> Level:
    """One trace at one sparsity: print its block (thinning, table, goals, the rate oracle), return its figures."""
    trace, workload = sparse_workload(key, per_minute, days)
    cluster = ClusterModel()
    keep = workload.scale
    rates, period = period_rates(trace, keep, workload.seconds, oracle_period_s)
    frontier = zero_frontier(rates, period, cluster.startup_s, grace_s)
    bound = bound_check(result, frontier, period)
    print(
        f"\n**{trace.name}** thinned to {per_minute:g} request/min on average (keep {keep:.5f}): "
        f"{workload.arrivals.sum():.0f} requests in {workload.seconds / 86400:.2f} days, busiest second "
        f"{workload.arrivals.max():.0f}; replica startup {cluster.startup_s} s"
    )
    quiet = quietest_hour(workload)
    if quiet is not None:
        hour, busy, rate = quiet
        print(
            f"quietest hour of the day {hour:02d}:00 UTC: {100 * busy:.0f} % of its minutes have a request "
            f"({rate:.2f} requests/min)"
        )
    print()
    print(table(result))
    print()
    goals = result.goals()
    for name, met, detail in goals:
        print(f"- {'met' if met else '**MISSED**'}: {name}: {detail}")
    for line in bound.lines():
        print(f"- {line}")
    total = sum(r.elapsed_s for r in result.rows.values())
    timings = ", ".join(f"{r.name} {r.elapsed_s:.1f} s" for r in result.rows.values())
    print(f"\nsimulated in {total:.1f} s of wall time ({timings}); prewarm-zero sources {result.sources}")
    return Level(per_minute, float(workload.arrivals.sum()), result, bound, [met for _, met, _ in goals])


@dataclass(frozen=True)
class Level:
    per_minute: float
    requests: float
    result: ZeroComparison
    bound: BoundCheck
    goals_met: list[bool]


def sweep_table(levels: list[Level]) -> str:
    """One row per sparsity: the key figures, the rate oracle's fewest cold starts for the cost goal, the goals."""
    lines = [
        "| requests/min | requests | prewarm-zero cost vs min1 | prewarm-zero at zero, cold | "
        "kpa-zero at zero, cold | oracle: cold for the cost goal | goal allows (kpa / 5) | both reachable | "
        "cost goal | cold-start goal |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for lv in levels:
        r, b = lv.result.rows, lv.bound
        ratio = r["prewarm-zero"].cost / r["prewarm-min1"].cost
        ours, kpa = r["prewarm-zero"], r["kpa-zero"]
        oracle = "-" if b.cold_at_goal is None else f"{b.cold_at_goal:.0f}"
        limit = "-" if b.cold_limit is None else f"{b.cold_limit:.0f}"
        reach = {True: "yes", False: "no", None: "-"}[b.reachable]
        met = ["met" if m else "**missed**" for m in lv.goals_met]
        lines.append(
            f"| {lv.per_minute:g} | {lv.requests:.0f} | {ratio:.3f}x | {100 * ours.zero_share:.1f} %, "
            f"{ours.cold.requests:.0f} | {100 * kpa.zero_share:.1f} %, {kpa.cold.requests:.0f} | {oracle} | "
            f"{limit} | {reach} | {met[0]} | {met[1]} |"
        )
    return "\n".join(lines)


def run_all(
    keys: list[str], levels: list[float], days: float, forecast_model: str, jobs: int
) -> dict[tuple[str, float], ZeroComparison]:
    """Every policy on every (trace, sparsity), ``jobs`` at a time in worker processes (1: in this process)."""
    tasks = [(key, level, name) for key in keys for level in levels for name in ZERO_POLICIES]
    if jobs <= 1:
        done = [run_one(key, level, days, name, forecast_model) for key, level, name in tasks]
    else:
        heavy_first = sorted(range(len(tasks)), key=lambda i: not tasks[i][2].startswith("prewarm"))
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {
                i: pool.submit(run_one, *tasks[i][:2], days, tasks[i][2], forecast_model) for i in heavy_first
            }
            done = [futures[i].result() for i in range(len(tasks))]
    out: dict[tuple[str, float], ZeroComparison] = {}
    for (key, level, name), part in zip(tasks, done, strict=True):
        prev = out.get((key, level))
        rows = {**(prev.rows if prev else {}), **part.rows}
        sources = part.sources if name == "prewarm-zero" else (prev.sources if prev else {})
        out[(key, level)] = ZeroComparison(part.workload, rows, sources)
    return out


def oracle_table(key: str, levels: list[float], days: float, oracle_period_s: int, grace_s: float) -> str:
    """No simulation: per sparsity, the rate oracle's fewest cold starts for the cost goal against a model of
    kpa-zero (reactive zero in every period, down after its stable window plus its grace: the same cycle formula),
    and their ratio, which the cold-start goal needs at or below 1 / COLD_START_GOAL."""
    kpa = KpaAutoscaler(ClusterModel().replica_capacity_rps, scale_to_zero=True)
    kpa_idle_s = kpa.stable_window_s + kpa.scale_to_zero_grace_s
    startup_s = ClusterModel().startup_s
    lines = [
        "| requests/min | requests | quietest, busiest period (requests/min) | oracle: cold for 40 % at zero | "
        f"kpa-zero model: at zero, cold | oracle / kpa (goal <= {1 / COLD_START_GOAL:.2f}) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for level in levels:
        trace, workload = sparse_workload(key, level, days)
        rates, period = period_rates(trace, workload.scale, workload.seconds, oracle_period_s)
        ours = zero_frontier(rates, period, startup_s, grace_s).min_cold(1 - COST_GOAL)
        theirs = zero_frontier(rates, period, startup_s, kpa_idle_s)
        ratio = "-" if ours is None else f"{ours / theirs.cold[-1]:.2f}"
        lines.append(
            f"| {level:g} | {rates.sum() * period:.0f} | {60 * rates.min():.3g}, {60 * rates.max():.3g} | "
            f"{'-' if ours is None else f'{ours:.0f}'} | "
            f"{100 * theirs.zero_s[-1] / theirs.span_s:.1f} %, {theirs.cold[-1]:.0f} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default=",".join(TRACES))
    parser.add_argument(
        "--per-minute",
        default=f"{SPARSE_REQUESTS_PER_MINUTE:g}",
        help="mean requests per minute of the thinned trace; several (0.1,0.3,1) make a sweep",
    )
    parser.add_argument("--days", type=float, default=0.0, help="only the first D days (0: the whole trace)")
    parser.add_argument("--forecast-model", default="profile", help="prewarm's forecast model (or auto)")
    parser.add_argument(
        "--oracle-period-s", type=int, default=3600, help="the rate oracle knows the rate of each such period"
    )
    parser.add_argument("--jobs", type=int, default=2, help="policies simulated at once, in worker processes")
    parser.add_argument(
        "--oracle-only",
        action="store_true",
        help="no simulation: the rate oracle against a model of kpa-zero",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    keys = args.traces.split(",")
    levels = [float(v) for v in args.per_minute.split(",")]
    grace_s = ScalingPolicy().scale_to_zero_grace_s
    if args.oracle_only:
        for key in keys:
            print(f"\n**{TRACES[key].removesuffix('.csv')}**, rate oracle per {args.oracle_period_s} s:\n")
            print(oracle_table(key, levels, args.days, args.oracle_period_s, grace_s))
        return
    results = run_all(keys, levels, args.days, args.forecast_model, args.jobs)
    for key in keys:
        done = [
            print_level(key, level, args.days, results[(key, level)], args.oracle_period_s, grace_s)
            for level in levels
        ]
        if len(done) > 1:
            print(f"\n**{TRACES[key].removesuffix('.csv')}**, sweep of the sparsity:\n")
            print(sweep_table(done))


if __name__ == "__main__":
    main()
