"""Fuzzing every operation of the control API from its own OpenAPI document, on real Postgres: no 5xx, and
every answer conforms to the document (status codes, content types, schemas)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from controller import repository
from controller.api import create_app
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.models import ForecastPoint, ForecastRun
from tests.api_support import ADMIN, settings_for

KNOWN = "digits"
_alternate = itertools.count()


class IdleRuntime:
    """A runtime without live counts whose refresh writes nothing (the forecaster is not under test here)."""

    def status(self, deployment_name: str) -> dict[str, Any] | None:
        return None

    async def refresh_forecast(self, deployment_name: str) -> None:
        return None

    def activate(self, deployment_name: str, held_requests: int) -> bool:
        return False


def ensure_known_deployment(engine: Engine) -> None:
    """The deployment most generated requests name, with a forecast, a decision and an override to read."""
    with session_factory(engine)() as session:
        try:
            repository.get_deployment(session, KNOWN)
            return
        except repository.NotFoundError:
            pass
        now = datetime.now(UTC)
        deployment = repository.create_deployment(
            session, name=KNOWN, model="digits_mlp", backend="local", backend_config={}, min_replicas=1,
            max_replicas=6, price_per_replica_hour=0.1, policy=None, author="fixture",
        )  # fmt: skip
        repository.record_decision(
            session, deployment.id, ts=now, current=1, desired=2, applied=True, source="predictive",
            reasons=[{"step": "predictive", "detail": "fixture"}], policy_version=1,
        )  # fmt: skip
        repository.create_override(
            session, deployment.id, kind="floor", value=1, starts_at=now, ends_at=now + timedelta(days=1),
            reason="fixture", author="fixture",
        )  # fmt: skip
        run = ForecastRun(deployment_id=deployment.id, model_name="profile", step_s=60, horizon_s=120)
        session.add(run)
        session.flush()
        session.add(ForecastPoint(run_id=run.id, target_ts=now, point=10, lower=5, upper=15))
        session.commit()


class Delegate:
    """An ASGI app forwarding to the app under test, which needs the per-run Postgres database (a fixture)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


# The document is the same whatever the database: read it from an app on an in-memory SQLite engine.
_document_engine = create_engine_for_url("sqlite://")
delegate = Delegate(create_app(_document_engine, settings=settings_for(_document_engine)))
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", delegate)


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    """The app under test runs on real Postgres, with a known deployment to read and change."""
    engine = create_engine_for_url(postgres_url)
    ensure_known_deployment(engine)
    previous = delegate.app
    delegate.app = create_app(engine, settings=settings_for(engine), runtime=IdleRuntime())
    yield engine
    delegate.app = previous
    engine.dispose()


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_answers_conform_to_the_openapi_document(
    case: schemathesis.Case, postgres_engine: Engine
) -> None:
    ensure_known_deployment(postgres_engine)
    if "name" in (case.path_parameters or {}) and next(_alternate) % 2 == 0:
        case.path_parameters = {
            **case.path_parameters,
            "name": KNOWN,
        }  # half the cases reach a real deployment
    case.call_and_validate(
        headers=ADMIN,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
