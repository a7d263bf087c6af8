"""Migrations: upgrade, downgrade, upgrade again, and the models match the migration history."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from prewarm.db import migrate
from prewarm.db.engine import create_engine_for_url
from prewarm.db.models import Base

EXPECTED_TABLES = {
    "metric_rollups",
    "maintenance_progress",
    "controller_leases",
    "controller_members",
    "deployment_status",
    "deployments",
    "metric_samples",
    "forecast_runs",
    "forecast_points",
    "policies",
    "overrides",
    "scaling_decisions",
    "spot_interruptions",
    "replica_events",
}


def _tables(url: str) -> set[str]:
    engine = create_engine_for_url(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_postgres(postgres_database_factory) -> None:  # type: ignore[no-untyped-def]
    url = postgres_database_factory()
    migrate.upgrade(url)
    assert _tables(url) == EXPECTED_TABLES
    migrate.downgrade(url, "base")
    assert _tables(url) == set()
    assert migrate.current_revision(url) is None
    migrate.upgrade(url)
    assert _tables(url) == EXPECTED_TABLES
    assert migrate.current_revision(url) is not None


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    migrate.downgrade(url, "base")
    assert _tables(url) == set()
    migrate.upgrade(url)
    assert _tables(url) == EXPECTED_TABLES


def test_models_match_migrations(database_url: str) -> None:
    engine = create_engine_for_url(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_postgres_uses_native_types(postgres_url: str) -> None:
    engine = create_engine_for_url(postgres_url)
    try:
        columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("metric_samples")}
        decision_columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("scaling_decisions")}
        deployment_columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("deployments")}
    finally:
        engine.dispose()
    assert "TIMESTAMP" in str(columns["ts"]) and getattr(columns["ts"], "timezone", False)
    assert str(decision_columns["reasons"]) == "JSONB"
    assert str(deployment_columns["price_per_replica_hour"]).startswith("NUMERIC")
