"""Simulator benchmark: the shared traces scaled so their peak needs about 20 replicas, every policy, timed.

    .venv/bin/python -m benchmarks.simulate_bench [--traces nasa,conv,code] [--report-dir DIR]

Prints, per trace, the policy table, the goals and the wall time of each policy's simulation.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from controller.simulation.cluster import ClusterModel
from controller.simulation.report import header, table, write_report
from controller.simulation.run import BASELINE_TARGET_UTILISATION, run_simulation
from controller.simulation.workload import per_second_arrivals
from prewarm.traces import TRACES_DIR, load_trace

TRACES = {
    "nasa": "nasa_http_jul1995_1min.csv",
    "conv": "azure_llm_conv_2023_1s.csv",
    "code": "azure_llm_code_2023_1s.csv",
}
PEAK_REPLICAS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default="nasa,conv,code")
    parser.add_argument("--report-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cluster = ClusterModel()
    for key in args.traces.split(","):
        trace = load_trace(TRACES_DIR / TRACES[key])
        scale = (
            PEAK_REPLICAS
            * cluster.replica_capacity_rps
            * BASELINE_TARGET_UTILISATION
            / float(trace.rates_rps.max())
        )
        workload = per_second_arrivals(trace, scale)
        start = time.perf_counter()
        result = run_simulation(workload, cluster)
        total = time.perf_counter() - start
        print(f"\n## {trace.name} (x{scale:.3f}, peak needs {PEAK_REPLICAS} replicas)\n")
        print(header(result))
        print()
        print(table(result))
        print()
        for goal in result.goals():
            print(f"- {'met' if goal.met else 'MISSED'}: {goal.name}: {goal.detail}")
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.elapsed_s.items())
        print(
            f"\nwall time {total:.1f} s ({timings}); prewarm sources {result.prewarm_sources}, refits {result.prewarm_refits}"
        )
        if args.report_dir:
            write_report(result, args.report_dir / trace.name)


if __name__ == "__main__":
    main()
