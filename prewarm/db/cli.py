"""``prewarm db``: schema migrations."""

from __future__ import annotations

import argparse
from typing import Any

from prewarm.settings import get_settings


def register(subparsers: Any) -> None:
    db_parser: argparse.ArgumentParser = subparsers.add_parser("db", help="database schema migrations")
    db_commands = db_parser.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")

    up = db_commands.add_parser("upgrade", help="migrate to the latest schema (or to REV)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_upgrade)

    down = db_commands.add_parser("downgrade", help="migrate down to REV ('base' drops everything)")
    down.add_argument("revision")
    down.set_defaults(handler=_downgrade)

    current = db_commands.add_parser("current", help="print the schema revision of the database")
    current.set_defaults(handler=_current)


def _upgrade(args: argparse.Namespace) -> int:
    from prewarm.db import migrate

    migrate.upgrade(get_settings().database_url, args.revision)
    print(f"database at {migrate.current_revision(get_settings().database_url)}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    from prewarm.db import migrate

    migrate.downgrade(get_settings().database_url, args.revision)
    print(f"database at {migrate.current_revision(get_settings().database_url) or 'base'}")
    return 0


def _current(_args: argparse.Namespace) -> int:
    from prewarm.db import migrate

    print(migrate.current_revision(get_settings().database_url) or "base (not migrated)")
    return 0
