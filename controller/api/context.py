"""What every request handler needs: the store, sessions, auth and the optional live runtime (FastAPI deps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from controller.api.auth import Principal, TokenAuthenticator
from controller.api.runtime import ControllerRuntime
from prewarm.db.store import MetricsStore
from prewarm.settings import Settings


@dataclass
class ApiContext:
    """Process-wide state of the API, kept on ``app.state.prewarm``."""

    engine: Engine
    sessions: sessionmaker[Session]
    settings: Settings
    auth: TokenAuthenticator
    runtime: ControllerRuntime | None = None
    forecast_job: Callable[[str], Any] | None = None  # built on first use when there is no runtime
    refresh_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def metrics_store(self) -> MetricsStore:
        """A fresh store per use, so that no deployment id is cached past a delete and re-create."""
        return MetricsStore(self.engine, max_future_skew_s=self.settings.max_future_skew_s)


bearer = HTTPBearer(
    auto_error=False,
    description="Admin token for changes; a read or admin token for reads when PREWARM_PROTECT_READS is on.",
)


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.prewarm
    return context


Context = Annotated[ApiContext, Depends(get_context)]


def get_session(context: Context) -> Iterator[Session]:
    """One session per request; handlers commit their changes, anything uncommitted is rolled back."""
    with context.sessions() as session:
        yield session


def require_admin(
    request: Request,
    context: Context,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    return context.auth.require_admin(request.headers.get("authorization"))


def require_reader(
    request: Request,
    context: Context,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal | None:
    return context.auth.require_reader(request.headers.get("authorization"))


DbSession = Annotated[Session, Depends(get_session)]
Admin = Annotated[Principal, Depends(require_admin)]
Reader = Annotated[Principal | None, Depends(require_reader)]
