"""Scale to zero in the simulator: sparse traces, prewarm with min 1 and with zero, Knative KPA with zero, HPA min 1.

    .venv/bin/python -m benchmarks.zero_sim [--traces nasa,code] [--per-minute 1.0] [--days D]
                                            [--forecast-model profile]

The sparse traces are the shipped NASA July 1995 and Azure LLM code traces thinned (Poisson thinning, seeded) to a
mean of ``--per-minute`` requests per minute (controller/simulation/sparse.py; the rule is in docs/zero.md). Prints
per trace the thinning, one table of every policy (cost, share of time at zero, requests that met a cold start and
their added wait, SLO-violating seconds) and the issue's goals, met or MISSED with the figure. ``--days D``
simulates only the first D days of the thinned trace (the thinning itself is over the whole trace); the README runs
the first week of NASA (its daily and weekly rhythm once), as the whole 28 days take about 20 CPU-minutes per prewarm
policy on a busy machine.
"""

from __future__ import annotations

import argparse
import logging
import time

from controller.policy import ScalingPolicy
from controller.simulation.cluster import ClusterModel
from controller.simulation.sparse import (
    SPARSE_REQUESTS_PER_MINUTE,
    keep_for_mean_rate,
    quietest_hour,
    thinned_arrivals,
)
from controller.simulation.workload import Workload
from controller.simulation.zero_run import run_zero, table
from prewarm.traces import TRACES_DIR, load_trace

TRACES = {"nasa": "nasa_http_jul1995_1min.csv", "code": "azure_llm_code_2023_1s.csv"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default=",".join(TRACES))
    parser.add_argument("--per-minute", type=float, default=SPARSE_REQUESTS_PER_MINUTE)
    parser.add_argument("--days", type=float, default=0.0, help="only the first D days (0: the whole trace)")
    parser.add_argument("--forecast-model", default="profile", help="prewarm's forecast model (or auto)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    cluster = ClusterModel()
    policy = ScalingPolicy(forecast_model=args.forecast_model)
    for key in args.traces.split(","):
        trace = load_trace(TRACES_DIR / TRACES[key])
        keep = keep_for_mean_rate(trace, args.per_minute)
        workload = thinned_arrivals(trace, keep)
        if args.days > 0 and workload.seconds > args.days * 86400:
            head = workload.arrivals[: round(args.days * 86400)]
            workload = Workload(
                workload.name, workload.start_ts, head, keep, workload.trace_step_s, workload.peak_interval_rps
            )
        start = time.perf_counter()
        result = run_zero(workload, cluster, policy)
        total = time.perf_counter() - start
        print(
            f"\n**{trace.name}** thinned to {args.per_minute:g} request/min on average (keep {keep:.5f}): "
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
        for name, met, detail in result.goals():
            print(f"- {'met' if met else '**MISSED**'}: {name}: {detail}")
        timings = ", ".join(f"{r.name} {r.elapsed_s:.1f} s" for r in result.rows.values())
        print(f"\nwall time {total:.1f} s ({timings}); prewarm-zero sources {result.sources}")


if __name__ == "__main__":
    main()
