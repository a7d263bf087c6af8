"""Run Alembic migrations programmatically (what ``prewarm db upgrade/downgrade`` calls)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """The folder holding ``alembic.ini`` and ``migrations/``: the source tree (editable install) or the working
    directory (an image that copies the repository and installs it into site-packages)."""
    for candidate in (PROJECT_ROOT, Path.cwd()):
        if (candidate / "alembic.ini").is_file() and (candidate / "migrations").is_dir():
            return candidate
    raise FileNotFoundError(
        f"alembic.ini and migrations/ not found in {PROJECT_ROOT} or {Path.cwd()}: run prewarm from the repository"
    )


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the repository's ``alembic.ini`` pointed at ``database_url``."""
    root = project_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at ``database_url`` up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Migrate the database at ``database_url`` down to ``revision`` (``base`` empties it)."""
    command.downgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None for an unmigrated database."""
    from alembic.runtime.migration import MigrationContext

    from prewarm.db.engine import create_engine_for_url

    engine = create_engine_for_url(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
