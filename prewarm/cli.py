"""The ``prewarm`` command line: one entry point, subcommands contributed by each package.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its subcommands and sets
``handler`` on them. Modules import heavy dependencies inside their handlers so that ``prewarm replica`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from prewarm.logs import configure_from_settings, configure_logging
from prewarm.settings import get_settings

__all__ = ["build_parser", "configure_logging", "main"]

COMMAND_MODULES = [
    "prewarm.db.cli",
    "prewarm.status_cli",
    "prewarm.demo.cli",
    "inference.cli",
    "inference.gateway.cli",
    "forecaster.cli",
    "controller.cli",
    "controller.cost_cli",
    "controller.simulation.cli",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="prewarm", description="Predictive autoscaler for ONNX inference.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # a package that does not offer commands (yet)
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_from_settings(get_settings())
    result = args.handler(args)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
