"""``prewarm demo``: the whole stack on one machine serving a time-compressed day of a real trace."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prewarm.traces import TRACES_DIR


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="run controller, gateway and replicas on a time-compressed day of real traffic"
    )
    parser.add_argument("--trace", type=Path, default=TRACES_DIR / "nasa_http_jul1995_1min.csv")
    parser.add_argument("--day", type=int, default=10, help="day of the trace to replay (0 = first)")
    parser.add_argument("--history-days", type=int, default=7, help="days before it stored as history")
    parser.add_argument("--compression", type=float, default=360.0, help="trace seconds per replayed second")
    parser.add_argument("--peak-replicas", type=int, default=8, help="replicas the day's peak needs")
    parser.add_argument(
        "--capacity-mode", choices=("configured", "learned"), default="configured",
        help="'learned': the policy learns each replica's capacity from the run (docs/decision.md)",
    )  # fmt: skip
    parser.add_argument(
        "--capacity-start", type=float, default=None, help="the policy's starting capacity per replica (rps)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("var/demo"), help="logs and replica state")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from prewarm.demo.run import DemoOptions, run_demo
    from prewarm.demo.stack import StackError
    from prewarm.settings import get_settings

    options = DemoOptions(
        trace=args.trace,
        live_day=args.day,
        history_days=args.history_days,
        compression=args.compression,
        peak_replicas=args.peak_replicas,
        capacity_mode=args.capacity_mode,
        capacity_start_rps=args.capacity_start,
        workdir=args.workdir,
        database_url=get_settings().database_url,
        quiet=args.quiet,
    )
    try:
        result = run_demo(options)
    except KeyboardInterrupt:
        print("\ninterrupted: the stack was stopped")
        return 130
    except StackError as error:
        print(f"demo failed: {error}")
        return 1
    print()
    print(result.table)
    return 0
