"""``prewarm simulate``: replay a trace through prewarm and the baseline autoscalers and compare them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from controller.simulation.cluster import (
        DEFAULT_MAX_WAIT_S,
        DEFAULT_PREWARM_S,
        DEFAULT_PRICE_PER_REPLICA_HOUR,
        DEFAULT_REPLICA_CAPACITY_RPS,
        DEFAULT_SCHEDULING_DELAY_S,
        DEFAULT_SLO_P95_MS,
    )

    p = subparsers.add_parser(
        "simulate",
        help="replay a trace through prewarm, HPA, Knative, static provisioning and an oracle",
        description="Replay a request trace (CSV timestamp,requests) second by second through every policy on the "
        "same cluster model and print cost, SLO violations, utilisation and surge lead per policy.",
    )
    p.add_argument("--trace", required=True, type=Path, help="trace CSV (header timestamp,requests)")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--scale", type=float, default=None, help="multiply the trace's request counts by X")
    scale.add_argument(
        "--peak-replicas",
        type=int,
        default=None,
        help="scale the trace so that its peak interval needs N replicas at 70 %% utilisation",
    )
    p.add_argument("--policy-file", type=Path, help="JSON file with a ScalingPolicy for prewarm")
    p.add_argument("--report", type=Path, metavar="DIR", help="write report.md and plot.png into DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument(
        "--policies",
        default=None,
        help="comma-separated subset of static-peak,hpa,kpa,prewarm,hpa-tuned,oracle",
    )
    p.add_argument(
        "--capacity",
        type=float,
        default=DEFAULT_REPLICA_CAPACITY_RPS,
        help="rps one replica serves at the latency SLO (default %(default)s, measured by the replica "
        "benchmark on its compute-bound model)",
    )
    p.add_argument("--prewarm-s", type=float, default=DEFAULT_PREWARM_S, help="replica pre-warm seconds")
    p.add_argument(
        "--scheduling-delay-s", type=float, default=DEFAULT_SCHEDULING_DELAY_S, help="pod scheduling seconds"
    )
    p.add_argument(
        "--price", type=float, default=DEFAULT_PRICE_PER_REPLICA_HOUR, help="money per replica-hour"
    )
    p.add_argument("--slo-ms", type=float, default=DEFAULT_SLO_P95_MS, help="p95 latency SLO")
    p.add_argument("--max-wait-s", type=float, default=DEFAULT_MAX_WAIT_S, help="queued longer: dropped")
    p.add_argument("--seed", type=int, default=1995, help="seed of the per-second Poisson draws")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from controller.policy import ScalingPolicy
    from controller.simulation.cluster import ClusterModel
    from controller.simulation.report import header, table, write_report
    from controller.simulation.run import BASELINE_TARGET_UTILISATION, POLICY_NAMES, run_simulation
    from controller.simulation.workload import per_second_arrivals, scale_for_peak_replicas
    from prewarm.traces import TraceFormatError, load_trace

    try:
        trace = load_trace(args.trace)
    except TraceFormatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    policy = ScalingPolicy()
    if args.policy_file:
        try:
            policy = ScalingPolicy.model_validate_json(args.policy_file.read_text())
        except (OSError, ValidationError) as error:
            print(f"error: policy file {args.policy_file}: {error}", file=sys.stderr)
            return 2
    try:
        cluster = ClusterModel(
            replica_capacity_rps=args.capacity,
            prewarm_s=args.prewarm_s,
            scheduling_delay_s=args.scheduling_delay_s,
            price_per_replica_hour=args.price,
            slo_p95_ms=args.slo_ms,
            max_wait_s=args.max_wait_s,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.peak_replicas is not None:
        scale = scale_for_peak_replicas(
            trace, args.peak_replicas, cluster.replica_capacity_rps, BASELINE_TARGET_UTILISATION
        )
    else:
        scale = args.scale if args.scale is not None else 1.0
    policies = tuple(args.policies.split(",")) if args.policies else POLICY_NAMES
    workload = per_second_arrivals(trace, scale, seed=args.seed)
    try:
        result = run_simulation(workload, cluster, policy, policies)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.report:
        path = write_report(result, args.report)
        print(f"report written to {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        print(header(result))
        print()
        print(table(result))
        for goal in result.goals():
            print(f"{'met   ' if goal.met else 'MISSED'} {goal.name}: {goal.detail}")
    return 0
