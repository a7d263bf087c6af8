"""Simulator benchmark: five traces scaled so their peak needs about 20 replicas, every policy, timed.

    .venv/bin/python -m benchmarks.simulate_bench [--traces nasa,conv,code,tune,show] [--report-dir DIR]
                                                  [--forecast-model profile] [--policy-file P]
                                                  [--capacity RPS] [--prewarm-s S] [--brief]

Prints, per trace, the policy table, the goals and the wall time of each policy's simulation, then one table of the
goals across traces (``--brief``: only the tables and wall times). The traces: the three shared ones (NASA July
1995, Azure LLM conversation and code) and two synthetic ones of smooth demand with a steady daily rhythm
(scripts/synthetic_trace.py): ``tune`` chose the defaults of decide()'s utilisation step, ``show`` played no part
in choosing them. prewarm runs with the default ScalingPolicy except its forecast model (``profile`` unless told
otherwise: ``auto`` assesses every candidate by backtest once a simulated day, which costs seconds per day of trace
when Holt-Winters is among them; docs/simulator.md).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from controller.policy import ScalingPolicy
from controller.simulation.cluster import ClusterModel
from controller.simulation.report import header, table, write_report
from controller.simulation.run import BASELINE_TARGET_UTILISATION, Goal, run_simulation
from controller.simulation.workload import per_second_arrivals, scale_for_peak_replicas
from prewarm.traces import TRACES_DIR, load_trace

TRACES = {
    "nasa": "nasa_http_jul1995_1min.csv",
    "conv": "azure_llm_conv_2023_1s.csv",
    "code": "azure_llm_code_2023_1s.csv",
    # Smooth demand with a steady daily rhythm (scripts/synthetic_trace.py): "tune" chose the defaults of the
    # utilisation step, "show" played no part in choosing them (docs/simulator.md).
    "tune": "synthetic_smooth_tune_1min.csv",
    "show": "synthetic_smooth_show_1min.csv",
}
PEAK_REPLICAS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default=",".join(TRACES))
    parser.add_argument("--report-dir", type=Path, default=None)
    parser.add_argument("--forecast-model", default="profile", help="prewarm's forecast model (or auto)")
    parser.add_argument("--policy-file", type=Path, default=None, help="JSON ScalingPolicy for prewarm")
    parser.add_argument(
        "--capacity", type=float, default=None, help="replica capacity rps (default: cluster's)"
    )
    parser.add_argument(
        "--prewarm-s", type=float, default=None, help="replica pre-warm seconds (default: cluster's)"
    )
    parser.add_argument(
        "--brief",
        action="store_true",
        help="per trace only its table and wall time (no header, no goal list); the goals table at the end",
    )
    args = parser.parse_args()
    policy = (
        ScalingPolicy.model_validate_json(args.policy_file.read_text())
        if args.policy_file
        else ScalingPolicy()
    )
    if "forecast_model" not in policy.model_fields_set:
        policy = policy.model_copy(update={"forecast_model": args.forecast_model})
    if not args.brief:
        print(f"prewarm policy: {policy.model_dump_json(exclude_defaults=True)} (everything else default)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    defaults = ClusterModel()
    cluster = ClusterModel(
        replica_capacity_rps=args.capacity or defaults.replica_capacity_rps,
        prewarm_s=defaults.prewarm_s if args.prewarm_s is None else args.prewarm_s,
    )
    goals_by_trace: dict[str, list[Goal]] = {}
    for key in args.traces.split(","):
        trace = load_trace(TRACES_DIR / TRACES[key])
        scale = scale_for_peak_replicas(
            trace, PEAK_REPLICAS, cluster.replica_capacity_rps, BASELINE_TARGET_UTILISATION
        )
        workload = per_second_arrivals(trace, scale)
        start = time.perf_counter()
        result = run_simulation(workload, cluster, policy)
        total = time.perf_counter() - start
        print(f"\n**{trace.name}** (x{scale:.3f}, peak needs {PEAK_REPLICAS} replicas)\n")
        if not args.brief:
            print(header(result))
            print()
        print(table(result))
        goals_by_trace[key] = result.goals()
        if not args.brief:
            print()
            for goal in goals_by_trace[key]:
                print(f"- {'met' if goal.met else 'MISSED'}: {goal.name}: {goal.detail}")
        timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.elapsed_s.items())
        print(
            f"\nwall time {total:.1f} s ({timings}); prewarm sources {result.prewarm_sources}, refits "
            f"{result.prewarm_refits} by model {result.prewarm_models}"
        )
        if args.report_dir:
            write_report(result, args.report_dir / trace.name)
    print()
    print(goals_table(goals_by_trace))


def goals_table(goals_by_trace: dict[str, list[Goal]]) -> str:
    """One Markdown row per goal, one column per trace: met or MISSED with the deciding figure."""
    keys = list(goals_by_trace)
    names = [goal.name for goal in next(iter(goals_by_trace.values()), [])]
    lines = ["| goal | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for index, name in enumerate(names):
        cells = []
        for key in keys:
            goal = goals_by_trace[key][index]
            cells.append(f"{'met' if goal.met else '**MISSED**'} ({goal.figure})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
