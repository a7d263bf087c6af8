"""The dashboard's HTTP routes: the page, its side-panel fragments, the chart series and the static files."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from sqlalchemy import Engine

from controller import fleet, repository
from controller.dashboard import data, fleet_render, render
from controller.fleet import FleetState
from prewarm.db.engine import session_factory

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
Minutes = Annotated[float, Query(gt=0, le=7 * 24 * 60, description="History window in minutes.")]
FleetName = Annotated[str, Query(max_length=63, description="Only deployments whose name contains this.")]
FleetLimit = Annotated[int, Query(ge=1, le=500)]
FleetOffset = Annotated[int, Query(ge=0, le=10_000_000)]
End = Annotated[
    float | None, Query(description="Epoch seconds the window ends at (default: now), to look at the past.")
]


def dashboard_router(
    engine: Engine, *, refresh_s: float = 5.0, default_minutes: float = 60.0, buckets: int = 16
) -> APIRouter:
    """Routes ``/`` (redirect), ``/dashboard`` (the fleet), ``/dashboard/deployments/{name}``,
    ``/dashboard/api/...`` and ``/dashboard/static/...``. ``buckets`` is the lease bucket count (for owners).

    Handlers are plain functions, so FastAPI runs their database reads in its thread pool.
    """
    router = APIRouter(include_in_schema=False)
    sessions = session_factory(engine)

    @router.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard", status_code=307)

    @router.get("/dashboard", response_class=HTMLResponse)
    def fleet_page(
        name: FleetName = "", state: FleetState = "all", limit: FleetLimit = 50, offset: FleetOffset = 0
    ) -> HTMLResponse:
        table = fleet_table_html(name, state, limit, offset)
        html = fleet_render.fleet_page_html(
            table, name=name, state=state, limit=limit, refresh_s=refresh_s, now=datetime.now(UTC)
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get("/dashboard/fleet", response_class=HTMLResponse)
    def fleet_fragment(
        name: FleetName = "", state: FleetState = "all", limit: FleetLimit = 50, offset: FleetOffset = 0
    ) -> HTMLResponse:
        return HTMLResponse(fleet_table_html(name, state, limit, offset), headers={"Cache-Control": "no-store"})

    def fleet_table_html(name: str, state: FleetState, limit: int, offset: int) -> str:
        now = datetime.now(UTC)
        with sessions() as session:
            rows, total = fleet.fleet_page(
                session, buckets=buckets, now=now, name=name, state=state, limit=limit, offset=offset
            )
            counts = fleet.fleet_summary(session, now)
        return fleet_render.fleet_table(
            rows, total, counts, name=name, state=state, limit=limit, offset=offset, now=now
        )

    @router.get("/dashboard/deployments/{deployment}", response_class=HTMLResponse)
    def deployment_page(deployment: str, minutes: Minutes = default_minutes, end: End = None) -> HTMLResponse:
        now = time.time() if end is None else end
        with sessions() as session:
            try:
                panels = [data.deployment_panel(session, deployment, now=now)]
            except repository.NotFoundError as error:
                raise HTTPException(404, str(error)) from error
        html = render.page_html(
            panels, now=datetime.fromtimestamp(now, UTC), refresh_s=refresh_s, minutes=minutes
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get("/dashboard/api/{deployment}/series", response_model=data.SeriesPayload)
    def series(deployment: str, minutes: Minutes = default_minutes, end: End = None) -> data.SeriesPayload:
        now = time.time() if end is None else end
        with sessions() as session:
            try:
                return data.deployment_series(engine, session, deployment, now=now, minutes=minutes)
            except repository.NotFoundError as error:
                raise HTTPException(404, str(error)) from error

    @router.get("/dashboard/api/{deployment}/panel", response_class=HTMLResponse)
    def panel(deployment: str, end: End = None) -> HTMLResponse:
        now = time.time() if end is None else end
        with sessions() as session:
            try:
                view = data.deployment_panel(session, deployment, now=now)
            except repository.NotFoundError as error:
                raise HTTPException(404, str(error)) from error
        return HTMLResponse(render.panel_html(view), headers={"Cache-Control": "no-store"})

    @router.get("/dashboard/static/{name}")
    def static(name: str) -> FileResponse:
        path = STATIC_DIR / name
        media_type = STATIC_TYPES.get(path.suffix)
        # Only the files shipped next to this module, by bare name: no sub-paths, no other file types.
        if media_type is None or path.parent != STATIC_DIR or not path.is_file():
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})

    return router
