"""``python -m inference replica ...``: the replica command alone (same flags as ``prewarm replica``)."""

from __future__ import annotations

import argparse
import sys

from inference.cli import register
from prewarm.cli import configure_logging
from prewarm.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    configure_logging(get_settings().log_level)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
