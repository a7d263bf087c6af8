"""``prewarm cost plan``: how many replicas to reserve, by the break-even rule, from a deployment's stored history
or from a trace file, with the expected monthly cost of each option (controller/cost_plan.py, docs/cost.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cost", help="cost tools: the reserved-capacity plan"
    )
    commands = parser.add_subparsers(dest="cost_command", required=True, metavar="COMMAND")
    plan = commands.add_parser(
        "plan",
        help="recommend how many replicas to reserve (break-even rule per level) with each option's monthly cost",
        description="Reserve level k when a reserved replica costs less than what would carry level k otherwise: "
        "on demand, or spot where level k is above the placement's spot bound (basis replicas with a spot pool). "
        "Without spot: when at least k replicas are needed in more than price_reserved / price_on_demand of the "
        "hours.",
    )
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--deployment", help="plan from this deployment's stored request rate (the database)")
    source.add_argument("--trace", type=Path, help="plan from a trace CSV (timestamp,requests)")
    plan.add_argument("--days", type=float, default=28.0, help="days of history to plan on (default 28)")
    plan.add_argument(
        "--basis",
        choices=("replicas", "demand"),
        default="replicas",
        help="with --deployment: the replicas it ran per minute (decision log; default) or each hour's peak "
        "request rate at the planned load per replica",
    )
    plan.add_argument(
        "--peak-replicas",
        type=int,
        default=20,
        help="with --trace: scale it so its peak needs N replicas at 70 %% utilisation (default 20)",
    )
    plan.add_argument(
        "--price-on-demand", type=float, default=None, help="default: the policy's (1.0 with --trace)"
    )
    plan.add_argument(
        "--price-reserved",
        type=float,
        default=None,
        help="default: the policy's reserved pool, else 0.6 x on-demand",
    )
    plan.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    plan.set_defaults(handler=_plan)


def _plan(args: argparse.Namespace) -> int:
    import numpy as np

    from controller import cost_plan

    if args.days <= 0:
        print("--days must be positive", file=sys.stderr)
        return 2
    non_spot: Any = None
    spot: float | None = None
    if args.trace is not None:
        needed, od, reserved, what = _from_trace(args)
    else:
        try:
            needed, non_spot, od, reserved, spot, what = _from_store(args)
        except LookupError as error:
            print(str(error), file=sys.stderr)
            return 1
    od = args.price_on_demand if args.price_on_demand is not None else od
    reserved = args.price_reserved if args.price_reserved is not None else reserved
    if od <= 0 or reserved < 0:
        print("prices: on-demand must be positive and reserved not negative", file=sys.stderr)
        return 2
    step_s = 60.0 if args.trace is None and args.basis == "replicas" else 3600.0
    result = cost_plan.plan(np.asarray(needed), reserved, od, step_s, non_spot, spot)
    if args.json:
        print(
            json.dumps(
                {"source": what, "price_reserved": reserved, "price_on_demand": od, **result.as_json()}
            )
        )
        return 0
    if spot is None:
        rule = (
            f"reserve level k pays off when at least k replicas are needed in more than "
            f"{100 * result.break_even_share:.0f} % of the hours"
        )
    else:
        rule = (
            f"spot costs {spot / od:.2f} and may carry {100 * result.spot_eligible_share:.1f} % of the "
            "replica-hours (above the spot bound), so reserve level k pays off when it costs less than on-demand "
            "where k is within the bound plus spot where it is above"
        )
    print(
        f"{what}: {result.hours:g} hours, peak {result.peak_replicas} replicas; reserved costs "
        f"{result.break_even_share:.2f} of on-demand, so {rule}\n"
    )
    print(
        f"recommendation: reserve {result.recommended_reserved} replicas (needed in "
        f"{100 * result.share_at_recommended:.1f} % of the time)\n"
    )
    print(result.table())
    return 0


def _from_trace(args: argparse.Namespace) -> tuple[Any, float, float, str]:
    from controller import cost_plan
    from controller.simulation.cluster import DEFAULT_REPLICA_CAPACITY_RPS
    from controller.simulation.workload import scale_for_peak_replicas
    from prewarm.traces import load_trace

    trace = load_trace(args.trace)
    planned = DEFAULT_REPLICA_CAPACITY_RPS * 0.7  # the simulator's replica at the baselines' 70 %
    scale = scale_for_peak_replicas(trace, args.peak_replicas, DEFAULT_REPLICA_CAPACITY_RPS, 0.7)
    rates = trace.rates_rps * scale
    keep = max(1, round(args.days * 86400 / trace.step_s))
    peaks = cost_plan.hourly_peaks(rates[:keep], float(trace.step_s))
    needed = cost_plan.replicas_needed(peaks, planned)
    return (
        needed,
        1.0,
        0.6,
        f"{trace.name} (first {args.days:g} days, peak needs {args.peak_replicas} replicas)",
    )


def _from_store(args: argparse.Namespace) -> tuple[Any, Any, float, float, float | None, str]:
    """(needed, non_spot, on-demand price, reserved price, spot price, what): with basis demand no split and no
    spot, as what the load needs is what the reactive path needs, which the spot bound keeps off spot."""
    from datetime import UTC, datetime, timedelta

    from controller import cost_plan, cost_queries, repository
    from controller.cost import replicas_per_step
    from prewarm.db.engine import create_engine_for_url, session_factory
    from prewarm.db.store import MetricsStore
    from prewarm.settings import get_settings

    settings = get_settings()
    engine = create_engine_for_url(settings.database_url)
    try:
        until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        since = until - timedelta(days=args.days)
        with session_factory(engine)() as session:
            deployment = repository.get_deployment(session, args.deployment)
            _, policy = repository.current_policy(session, deployment.id)
            points = cost_queries.cost_points(session, deployment.id, since, until)
        needed: Any
        non_spot: Any = None
        if args.basis == "replicas":
            needed, non_spot = replicas_per_step(points, since.timestamp(), until.timestamp())
        else:
            store = MetricsStore(engine, max_future_skew_s=settings.max_future_skew_s)
            needed = cost_queries.needed_per_hour(store, args.deployment, policy, since, until)
    finally:
        engine.dispose()
    reserved, od = cost_plan.on_demand_and_reserved_prices(policy.pools, policy.price_per_replica_hour)
    spot = cost_plan.spot_price(policy.pools) if args.basis == "replicas" else None
    return needed, non_spot, od, reserved, spot, f"deployment {args.deployment} (last {args.days:g} days)"
