"""Where the cost plan's rule was chosen: the break-even rule per level (spot above the bound) against the classic
one (every level on demand), each planned on the window it is then simulated on, never on the reported NASA figure.

    .venv/bin/python -m benchmarks.cost_rule_check [--traces conv,code] [--nasa-week 2]

For each trace: prewarm on-demand only; the cost plan on the replicas it ran per minute with both rules (the whole
window: the plan's own learning window); prewarm with pools at each recommended size, at the "high" interruption rate
of benchmarks/cost_bench.py. ``--nasa-week N`` checks one week of the NASA trace other than the first (the one the
reported 28-day run plans on), scaled as the 28-day run is.
"""

from __future__ import annotations

import argparse
import math
from concurrent.futures import ProcessPoolExecutor

from benchmarks import cost_bench
from controller import cost_plan
from controller.placement import non_spot_floors
from controller.policy import ScalingPolicy
from controller.simulation.baselines import static_peak_replicas
from controller.simulation.cluster import ClusterModel
from controller.simulation.metrics import violating_seconds
from controller.simulation.pooled import simulate_pooled
from controller.simulation.prewarm_policy import PrewarmAutoscaler
from controller.simulation.run import BASELINE_TARGET_UTILISATION, simulation_policy
from controller.simulation.workload import Workload, per_second_arrivals, scale_for_peak_replicas
from prewarm.traces import TRACES_DIR, Trace, load_trace


def workload_for(key: str, week: int | None, cluster: ClusterModel) -> tuple[Workload, int]:
    """The workload (the whole trace, or one week of it) and the static peak size of the whole trace."""
    full = load_trace(TRACES_DIR / cost_bench.TRACES[key])
    scale = scale_for_peak_replicas(
        full, cost_bench.PEAK_REPLICAS, cluster.replica_capacity_rps, BASELINE_TARGET_UTILISATION
    )
    whole = per_second_arrivals(full, scale)
    static_n = static_peak_replicas(
        whole.peak_interval_rps, cluster.replica_capacity_rps, BASELINE_TARGET_UTILISATION
    )
    if week is None:
        return whole, static_n
    per_day = 86400 // full.step_s
    rows = slice((week - 1) * 7 * per_day, week * 7 * per_day)
    trace = Trace(f"{full.name} week {week}", full.timestamps[rows], full.requests[rows], full.step_s)
    return per_second_arrivals(trace, scale), static_n


def pooled_run(
    workload: Workload, cluster: ClusterModel, base: ScalingPolicy, initial: int, reserved: int
) -> tuple[int, float, dict[str, float], int]:
    """(reserved, cost, cost by pool, SLO-violating seconds) of prewarm with pools at the high rate."""
    policy = cost_bench.pooled_policy(base, reserved)
    run = simulate_pooled(
        PrewarmAutoscaler(policy), workload, cluster, policy, initial, cost_bench.INTERRUPTIONS[0]
    )
    bad = int(violating_seconds(run.run, workload.arrivals, cluster).sum())
    return reserved, run.cost, run.cost_by_pool, bad


def check(key: str, week: int | None, workers: int) -> None:
    cluster = ClusterModel()
    workload, static_n = workload_for(key, week, cluster)
    base = simulation_policy(ScalingPolicy(forecast_model="profile"), cluster, static_n)
    first = float(workload.arrivals[:60].mean())
    initial = max(base.min_replicas, math.ceil(first / base.planned_rps_per_replica - 1e-9))
    od = simulate_pooled(PrewarmAutoscaler(base), workload, cluster, base, initial)
    od_bad = int(violating_seconds(od.run, workload.arrivals, cluster).sum())
    billed = od.run.billed
    needed = cost_plan.replicas_in_use(billed, 60)
    non_spot = cost_plan.replicas_in_use(non_spot_floors(billed, od.reactive_need, base.spot_max_share), 60)
    price = base.price_per_replica_hour
    reserved_price, spot_price = cost_bench.RESERVED_PRICE * price, cost_bench.SPOT_PRICE * price
    classic = cost_plan.plan(needed, reserved_price, price, 60.0)
    per_level = cost_plan.plan(needed, reserved_price, price, 60.0, non_spot, spot_price)
    sizes = {"classic": classic.recommended_reserved, "per level": per_level.recommended_reserved}
    print(
        f"\n**{workload.name}**: {100 * per_level.spot_eligible_share:.1f} % of the replica-hours prewarm on-demand only ran "
        f"lie above the spot bound; classic rule reserves {sizes['classic']}, per level {sizes['per level']}\n"
    )
    print("| rule | reserved | cost x on-demand only | reserved | spot | on-demand | SLO-violating share |")
    print("|---|---:|---:|---:|---:|---:|---|")
    n = workload.seconds
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = {
            level: pool.submit(pooled_run, workload, cluster, base, initial, level) for level in set(sizes.values())
        }
        results = {level: job.result() for level, job in jobs.items()}
    for rule, level in sizes.items():
        _, cost, by_pool, bad = results[level]
        cells = " | ".join(f"{by_pool.get(k, 0.0):.2f}" for k in ("reserved", "spot", "on-demand"))
        print(
            f"| {rule} | {level} | {cost / od.cost:.3f} | {cells} | {100 * bad / n:.3f} % vs "
            f"{100 * od_bad / n:.3f} % |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default="conv,code", help="whole traces to check (default conv,code)")
    parser.add_argument("--nasa-week", type=int, default=None, help="also one NASA week (2-4), e.g. 2")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for key in filter(None, args.traces.split(",")):
        check(key, None, args.workers)
    if args.nasa_week is not None:
        if not 2 <= args.nasa_week <= 4:
            parser.error("--nasa-week: 2, 3 or 4 (the first week is the one the reported run plans on)")
        check("nasa", args.nasa_week, args.workers)


if __name__ == "__main__":
    main()
