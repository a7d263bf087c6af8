"""``prewarm controller``: the control API, the reconcile loop and the scheduled forecasts in one process."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prewarm.settings import get_settings


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "controller", help="serve the control API and run the reconcile loop and scheduled forecasts"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where local replicas publish their registry and logs (default: PREWARM_REPLICA_STATE_DIR)",
    )
    parser.add_argument(
        "--tick-s", type=float, default=0.1, help="how often the loop looks for due decisions (seconds)"
    )
    parser.add_argument(
        "--no-loop", action="store_true", help="serve the API only (no scaling, no forecasts)"
    )
    parser.set_defaults(handler=_controller)


def _controller(args: argparse.Namespace) -> int:
    import asyncio

    from controller.serve import serve_controller

    settings = get_settings()
    state_dir = args.state_dir or Path(settings.replica_state_dir)
    return asyncio.run(
        serve_controller(
            settings, host=args.host, port=args.port, state_dir=state_dir, tick_s=args.tick_s,
            run_loop=not args.no_loop,
        )
    )  # fmt: skip
