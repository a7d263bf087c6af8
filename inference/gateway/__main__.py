"""``python -m inference.gateway ...``: the gateway command alone (same flags as ``prewarm gateway``)."""

from __future__ import annotations

import argparse
import sys

from inference.gateway.cli import register
from prewarm.cli import configure_logging
from prewarm.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.gateway")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(["gateway", *(sys.argv[1:] if argv is None else argv)])
    configure_logging(get_settings().log_level)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
