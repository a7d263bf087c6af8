"""How the default of ``forecast_utilisation_max`` was chosen: a sweep on the tuning trace only.

    .venv/bin/python -m benchmarks.simulate_tuning [--trace tune] [--values 0.8,0.9,0.95,1.0]

Runs the simulator's HPA and prewarm (default policy, ``forecast_model=profile`` as in ``simulate_bench``, the one
field swept) on ``data/traces/synthetic_smooth_tune_1min.csv`` scaled so its peak needs 20 replicas, and prints
prewarm's cost against the HPA's and both policies' SLO-violating seconds for each value. The rule that chose the
default: the hottest value whose violating seconds are no more than the HPA's. The held-out trace
(``synthetic_smooth_show_1min.csv``) is not run here: ``simulate_bench`` shows the chosen default on it.
"""

from __future__ import annotations

import argparse

from benchmarks.simulate_bench import PEAK_REPLICAS, TRACES
from controller.policy import ScalingPolicy
from controller.simulation.cluster import ClusterModel
from controller.simulation.run import BASELINE_TARGET_UTILISATION, run_simulation
from controller.simulation.workload import per_second_arrivals, scale_for_peak_replicas
from prewarm.traces import TRACES_DIR, load_trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trace", default="tune", choices=sorted(TRACES))
    parser.add_argument("--values", default="0.8,0.9,0.95,1.0")
    args = parser.parse_args()
    cluster = ClusterModel()
    trace = load_trace(TRACES_DIR / TRACES[args.trace])
    scale = scale_for_peak_replicas(trace, PEAK_REPLICAS, cluster.replica_capacity_rps, BASELINE_TARGET_UTILISATION)
    workload = per_second_arrivals(trace, scale)
    hpa = run_simulation(workload, cluster, ScalingPolicy(), ("hpa",)).results["hpa"]
    print(f"**{trace.name}** (x{scale:.3f}); hpa: cost {hpa.cost:.2f}, {hpa.slo_violation_s} violating s\n")
    print("| forecast_utilisation_max | prewarm cost | prewarm / hpa | prewarm violating s | mean utilisation |")
    print("|---:|---:|---:|---:|---:|")
    chosen = None
    for text in args.values.split(","):
        value = float(text)
        policy = ScalingPolicy(forecast_model="profile", forecast_utilisation_max=value)
        prewarm = run_simulation(workload, cluster, policy, ("prewarm",)).results["prewarm"]
        print(
            f"| {value:g} | {prewarm.cost:.2f} | {prewarm.cost / hpa.cost:.3f} | {prewarm.slo_violation_s} | "
            f"{100 * prewarm.mean_utilisation:.1f} % |"
        )
        if prewarm.slo_violation_s <= hpa.slo_violation_s:
            chosen = value if chosen is None else max(chosen, value)
    print(f"\nhottest value with no more violating seconds than the hpa: {chosen}")


if __name__ == "__main__":
    main()
