"""Learned capacity on the live stack: the demo's replicas (20 ms service time, one request at a time: a 50 rps
ceiling each) replayed for a day with a policy that learns the capacity, from a good start and from starts 2x too
low and 2x too high, beside the same day with the capacity configured.

Usage: python -m benchmarks.capacity_bench [--starts 40,25,100] [--configured 40,100] [--day 10]
       [--compression 360] [--truth-levels 36,40,44,48]

The true capacity at the SLO is measured first, in the same run (benchmarks/capacity_truth.py): four replicas
behind the gateway, no controller, the demo day's busiest 20 s replayed at fixed loads per replica; the load at
which half the seconds have a p95 over the SLO. Sub-second bursts put it below the ceiling.

Each run is ``prewarm demo`` (the whole stack on one machine, NASA day 10 at 360x, about 4 minutes) on a scratch
SQLite store; the learned estimate is read from the deployment's stored status at the end. Goal (issue 14): within
15 % of the true capacity after a day, and no more SLO-violating seconds than the configured run beyond what the
reactive path allows: the run configured with the high start's capacity, never learning, is what the reactive path
alone allows with that number.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.capacity_truth import true_capacity
from prewarm.demo.run import DemoOptions, run_demo
from prewarm.traces import TRACES_DIR


@dataclass(frozen=True)
class CapacityRun:
    label: str
    start_rps: float
    mode: str
    estimate: dict[str, object] | None
    in_use_rps: float | None
    violation_share: float
    replica_minutes: float
    slip: str


def one_run(label: str, mode: str, start: float, compression: float, day: int, workdir: Path) -> CapacityRun:
    database = workdir / f"{label.replace(' ', '-')}.db"
    options = DemoOptions(
        trace=TRACES_DIR / "nasa_http_jul1995_1min.csv",
        live_day=day,
        compression=compression,
        capacity_mode=mode,
        capacity_start_rps=start,
        workdir=workdir / label.replace(" ", "-"),
        database_url=f"sqlite:///{database}",
        quiet=True,
    )
    result = run_demo(options)
    with sqlite3.connect(database) as connection:
        stored = connection.execute("SELECT capacity FROM deployment_status").fetchone()
    capacity = json.loads(stored[0]) if stored and stored[0] else {}
    slip = next((line for line in result.table.splitlines() if line.startswith("Replay timing")), "")
    warned = any(line.startswith("WARNING") for line in result.table.splitlines())
    return CapacityRun(
        label, start, mode, capacity.get("estimate"), capacity.get("in_use_rps"), result.live.violation_share,
        result.live.replica_minutes, ("slipped: " if warned else "") + slip.removeprefix("Replay timing: "),
    )  # fmt: skip


def rates(text: str) -> list[float]:
    """A comma-separated list of rates (rps), blanks skipped."""
    return [float(value) for value in text.split(",") if value.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", default="40,25,100", help="starting capacities of the learned runs (rps)")
    parser.add_argument(
        "--configured",
        default="40,100",
        help="configured capacities (rps) of the runs without learning: the right one, and the high start's (what the "
        "reactive path alone allows with that number)",
    )
    parser.add_argument("--compression", type=float, default=360.0)
    parser.add_argument("--day", type=int, default=10, help="the NASA day replayed (the demo's: 10)")
    parser.add_argument("--truth-levels", default="36,40,44,48", help="loads per replica of the truth (rps)")
    parser.add_argument("--truth-replicas", type=int, default=4)
    parser.add_argument("--truth-seconds", type=int, default=20)
    args = parser.parse_args()
    defaults = DemoOptions(trace=Path("unused"))
    ceiling_rps = 1000.0 / defaults.service_time_ms  # one request at a time per replica
    loads = sorted(rates(args.truth_levels))
    true_rps, levels = true_capacity(args.truth_replicas, loads, args.truth_seconds, args.day)
    runs: list[CapacityRun] = []
    with tempfile.TemporaryDirectory(prefix="prewarm-capacity-") as scratch:
        workdir = Path(scratch)
        for start in rates(args.configured):
            runs.append(one_run(f"configured {start:g}", "configured", start, args.compression, args.day, workdir))
        for start in rates(args.starts):
            runs.append(one_run(f"learned from {start:g}", "learned", start, args.compression, args.day, workdir))
    shares = ", ".join(f"{level.load_rps:.1f} rps: {level.bad_share:.0%}" for level in levels)
    truth = f"{true_rps:.1f} rps per replica" if true_rps is not None else "not bracketed by the levels"
    print(f"Demo replicas: {defaults.service_time_ms:g} ms per request, one at a time: a {ceiling_rps:g} rps ceiling "
          f"per replica. True capacity at the SLO, measured ({args.truth_replicas} replicas, the day's busiest "
          f"{args.truth_seconds} s per load; share of seconds over the SLO: {shares}): {truth}. NASA day {args.day} at "
          f"{args.compression:g}x; goal: learned within 15 % of the true capacity after the day.\n")  # fmt: skip
    print("| run | start rps | learned estimate (basis, confidence; strain) | error vs true | vs ceiling | "
          "in use at the end | in use vs true | violating seconds | replica-minutes |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        estimate = run.estimate or {}
        rps, strain = estimate.get("rps_per_replica"), estimate.get("strained_rps")
        strained = f"; strain {strain:.1f}" if isinstance(strain, float) else ""
        shown = (
            f"{'' if estimate.get('bracketed') else '>= '}{rps:.1f} ({estimate.get('basis')}, "
            f"{estimate.get('confidence'):.2f}{strained})"
            if isinstance(rps, float)
            else "none"
        )
        error = f"{100 * (rps / true_rps - 1):+.0f} %" if isinstance(rps, float) and true_rps else "-"
        versus_ceiling = f"{100 * (rps / ceiling_rps - 1):+.0f} %" if isinstance(rps, float) else "-"
        in_use = f"{run.in_use_rps:.1f}" if run.in_use_rps is not None else "-"
        in_use_error = f"{100 * (run.in_use_rps / true_rps - 1):+.0f} %" if run.in_use_rps and true_rps else "-"
        print(f"| {run.label} | {run.start_rps:g} | {shown} | {error} | {versus_ceiling} | {in_use} | {in_use_error} "
              f"| {100 * run.violation_share:.1f} % | {run.replica_minutes:.1f} |")  # fmt: skip
    print()
    for run in runs:
        print(f"- {run.label}: {run.slip}")


if __name__ == "__main__":
    main()
