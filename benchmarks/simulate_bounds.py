"""How close can a policy that does not know the future get to the oracle? Idealised causal bounds, not a policy.

    .venv/bin/python -m benchmarks.simulate_bounds [--traces nasa,conv,code]

On the same per-second arrivals the simulator uses (trace scaled so its peak needs 20 replicas at 70 %), every minute's
capacity is chosen from what was known at the end of the minute before: the exact mean rates of the past minutes
(better than any forecast), times a headroom multiplier, with no startup delay and no rounding of time. Printed per
multiplier: cost / the oracle's (replica-seconds), the share of minutes in which some second exceeded the capacity
and the share of seconds that did (the simulator's goal allows 0.1 % of seconds violating the SLO). Then, per rule,
the smallest headroom (searched from 1.0 to 5.0 in steps of 0.05) whose seconds over capacity are at most 0.1 %, and
its cost / the oracle's: what the idealised policy pays for the goal's SLO. Also the oracle's mean utilisation, which bounds every policy that serves the same requests: utilisation / oracle's =
oracle cost / cost.
"""

from __future__ import annotations

import argparse
import functools

import numpy as np

from benchmarks.simulate_bench import PEAK_REPLICAS, TRACES
from controller.simulation.baselines import oracle_schedule
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import simulate_schedule
from controller.simulation.metrics import summarise
from controller.simulation.run import BASELINE_TARGET_UTILISATION
from controller.simulation.workload import per_second_arrivals, scale_for_peak_replicas
from prewarm.traces import TRACES_DIR, load_trace

MULTIPLIERS = (1.3, 1.6, 2.0, 2.5, 3.0)
SLO_SECONDS_SHARE = 0.001  # the simulator goal: at most 0.1 % of seconds violating


def idealised_outcome(
    known: np.ndarray, headroom: float, next_minutes: np.ndarray, capacity: float, oracle_minutes: float
) -> tuple[float, float, float]:
    """Cost / oracle's, share of minutes short and share of seconds over capacity when each minute's replicas are
    ``known[minute - 1] x headroom`` (at least one)."""
    replicas = np.maximum(1.0, np.ceil(known[:-1] * headroom / capacity - 1e-9))
    over = next_minutes > (replicas * capacity)[:, None]
    cost = float(replicas.sum()) / oracle_minutes
    return cost, float(over.any(axis=1).mean()), float(over.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default="nasa,conv,code")
    args = parser.parse_args()
    cluster = ClusterModel()
    capacity = cluster.replica_capacity_rps
    for key in args.traces.split(","):
        trace = load_trace(TRACES_DIR / TRACES[key])
        scale = scale_for_peak_replicas(trace, PEAK_REPLICAS, capacity, BASELINE_TARGET_UTILISATION)
        workload = per_second_arrivals(trace, scale)
        arrivals = workload.arrivals
        minutes = len(arrivals) // 60
        per_minute = arrivals[: minutes * 60].reshape(minutes, 60)
        mean_rps = per_minute.mean(axis=1)
        schedule = oracle_schedule(arrivals, cluster)
        oracle_run = simulate_schedule("oracle", workload, cluster, schedule.ready, schedule.billed, 0)
        oracle = summarise(oracle_run, arrivals, cluster, [])
        oracle_minutes = schedule.billed[60 : minutes * 60].sum() / 60.0
        rising = mean_rps[:-1] > np.quantile(mean_rps, 0.25)
        ratio = mean_rps[1:][rising] / mean_rps[:-1][rising]
        print(f"\n**{trace.name}** (x{scale:.3f})\n")
        print(
            f"oracle mean utilisation {100 * oracle.mean_utilisation:.1f} %; next minute's mean / this minute's "
            f"(above the lower quartile): median {np.median(ratio):.2f}, q90 {np.quantile(ratio, 0.9):.2f}, "
            f"q99 {np.quantile(ratio, 0.99):.2f}"
        )
        print(
            "| known at the end of each minute | x headroom | cost / oracle | minutes short | seconds over |"
        )
        print("|---|---:|---:|---:|---:|")
        window = 5
        padded = np.concatenate((np.zeros(window - 1), mean_rps))
        recent_max = np.lib.stride_tricks.sliding_window_view(padded, window).max(axis=1)
        rules = (
            ("last minute's mean", mean_rps),
            ("max of the last 5 minutes' means", recent_max),
        )
        next_minutes = per_minute[1:]
        outcome = functools.partial(
            idealised_outcome, next_minutes=next_minutes, capacity=capacity, oracle_minutes=oracle_minutes
        )
        for label, known in rules:
            for m in MULTIPLIERS:
                cost, short, seconds_over = outcome(known, m)
                print(f"| {label} | {m:g} | {cost:.2f} | {100 * short:.2f} % | {100 * seconds_over:.3f} % |")
        for label, known in rules:
            for m in np.arange(1.0, 5.0001, 0.05):
                cost, _, seconds_over = outcome(known, float(m))
                if seconds_over <= SLO_SECONDS_SHARE:
                    print(
                        f"- {label}: seconds over capacity <= 0.1 % needs x{m:.2f} headroom, "
                        f"{cost:.2f}x the oracle's cost"
                    )
                    break
            else:
                print(f"- {label}: no headroom up to x5 keeps seconds over capacity <= 0.1 %")


if __name__ == "__main__":
    main()
