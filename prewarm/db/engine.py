"""Engine creation with the per-dialect settings prewarm relies on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Integer, any_, create_engine, event, literal
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker


def create_engine_for_url(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout so several processes can share it."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory that keeps loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def among(
    session: Session | Connection, column: InstrumentedAttribute[int], ids: Iterable[int]
) -> ColumnElement[bool]:
    """``column IN ids`` for a list of ids of any length.

    On Postgres one array parameter (``column = ANY(%s::integer[])``): the statement's text is the same for any
    number of ids, so SQLAlchemy and psycopg reuse its compiled and converted form (an ``IN`` list is rendered and
    parsed again on every execution: with 1,000 ids that cost more CPU than the query). Elsewhere a plain ``IN``.
    """
    values = list(ids)
    dialect = session.get_bind().dialect if isinstance(session, Session) else session.dialect
    if dialect.name == "postgresql":
        return column == any_(literal(values, type_=postgresql.ARRAY(Integer)))
    return column.in_(values)
