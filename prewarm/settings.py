"""All configuration, read from environment variables (prefix ``PREWARM_``) in one place."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every field maps to ``PREWARM_<NAME>`` (see the README's configuration table)."""

    model_config = SettingsConfigDict(env_prefix="PREWARM_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///prewarm.db",
        description="SQLAlchemy URL of the store; an SQLite file by default, postgresql+psycopg://... for Postgres.",
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")
    max_future_skew_s: float = Field(
        default=300.0, gt=0, description="Samples stamped further than this in the future are rejected."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (read once from the environment)."""
    return Settings()
