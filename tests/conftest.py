"""Shared fixtures: real databases (SQLite file and a scratch Postgres database per test run).

Postgres is the one this machine runs on 127.0.0.1:5432 (override with PREWARM_TEST_POSTGRES_URL). Each test run
creates its own scratch databases and drops them at the end; tests never mock the database.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from prewarm.db import migrate
from prewarm.db.engine import create_engine_for_url
from prewarm.db.models import Base

ADMIN_POSTGRES_URL = os.environ.get(
    "PREWARM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin_engine() -> Engine:
    return create_engine(ADMIN_POSTGRES_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def postgres_database_factory() -> Iterator[object]:
    """Creates scratch Postgres databases on demand; drops all of them when the run ends."""
    admin = _admin_engine()
    created: list[str] = []

    def create() -> str:
        name = f"prewarm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(ADMIN_POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    yield create
    with admin.connect() as connection:
        for name in created:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_database_factory) -> str:  # type: ignore[no-untyped-def]
    url: str = postgres_database_factory()
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def migrated_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "prewarm.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    return url


def _empty_tables(url: str) -> None:
    engine = create_engine_for_url(url)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                names = ", ".join(table.name for table in Base.metadata.sorted_tables)
                connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(Base.metadata.sorted_tables):
                    connection.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database: each test runs once on SQLite and once on real Postgres."""
    url: str = request.getfixturevalue(f"migrated_{request.param}_url")
    _empty_tables(url)
    return url


@pytest.fixture
def postgres_url(migrated_postgres_url: str) -> str:
    """A migrated, empty real Postgres database (for tests that need Postgres specifically)."""
    _empty_tables(migrated_postgres_url)
    return migrated_postgres_url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine_for_url(database_url)
    yield engine
    engine.dispose()


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects: the ``one_process`` marks below must be there by then
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The container tests (``-m containers``, minutes of Docker work) run after the rest, in their own order, so
    that they neither delay the other tests nor share the machine's busiest minutes with them.

    Tests that share their id with another (schemathesis makes one per API operation, all named as the function)
    are marked ``one_process``: pytest-xdist would run only one of them, so ``make test`` runs them in its
    one-process pass."""
    items.sort(key=lambda item: item.get_closest_marker("containers") is not None)
    seen = Counter(item.nodeid for item in items)
    for item in items:
        if seen[item.nodeid] > 1:
            item.add_marker(pytest.mark.one_process)
