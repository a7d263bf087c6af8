"""The REST control API: ``create_app(engine, settings=..., runtime=...)`` builds the FastAPI app under /api/v1."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import Engine

from controller.api.auth import TokenAuthenticator
from controller.api.context import ApiContext
from controller.api.errors import install_error_handlers
from controller.api.limits import BodySizeLimit
from controller.api.openapi import install_problem_openapi
from controller.api.routers import (
    activation,
    cost,
    decisions,
    deployments,
    fleet,
    forecasts,
    overrides,
    policies,
    samples,
)
from controller.api.runtime import ControllerRuntime
from prewarm.db.engine import session_factory
from prewarm.settings import Settings

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

DESCRIPTION = """\
Operate prewarm over HTTP: deployments, the fleet overview, their versioned scaling policies, forecasts, operator
overrides (pin, floor, freeze, reactive-only, dry-run), the decision log, and metric ingestion.

**Auth**: changes need `Authorization: Bearer <admin token>` (`PREWARM_ADMIN_TOKENS`); reads are open unless
`PREWARM_PROTECT_READS` is on. **Errors** are RFC 9457 problem details (`application/problem+json`); 422 lists
each invalid field with its path.
"""


class Health(BaseModel):
    status: str
    runtime: bool


def create_app(engine: Engine, *, settings: Settings, runtime: ControllerRuntime | None = None) -> FastAPI:
    """The API app. With ``runtime`` (the live controller), status is live and refreshes go through it."""
    app = FastAPI(
        title="prewarm control API",
        version="1",
        description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.prewarm = ApiContext(
        engine=engine,
        sessions=session_factory(engine),
        settings=settings,
        auth=TokenAuthenticator.from_settings(settings),
        runtime=runtime,
    )
    install_error_handlers(app)
    install_problem_openapi(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)

    api = APIRouter(prefix=API_PREFIX)

    @api.get("/health", tags=["health"], summary="The API is up (open, no token needed)")
    def health() -> Health:
        return Health(status="ok", runtime=runtime is not None)

    for module in (deployments, activation, fleet, policies, forecasts, overrides, decisions, samples, cost):
        api.include_router(module.router)
    app.include_router(api)
    return app
