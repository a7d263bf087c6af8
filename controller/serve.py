"""Assemble and serve the controller process: store, metrics source, loop, forecasts, API."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from controller.forecast_job import ForecastJob
from controller.loop import MetricsSource, ReconcileLoop
from controller.runtime import ControllerRuntime
from controller.sources.store import RecordingSource, StoreSource
from prewarm.db import migrate
from prewarm.db.engine import create_engine_for_url
from prewarm.db.store import MetricsStore
from prewarm.settings import Settings

logger = logging.getLogger(__name__)


def metrics_source(settings: Settings, store: MetricsStore) -> MetricsSource:
    """Prometheus when ``PREWARM_PROMETHEUS_URL`` is set, otherwise prewarm's own metrics store."""
    if settings.prometheus_url:
        from controller.sources.prometheus import PrometheusSource

        logger.info("observations from Prometheus at %s (kept in the metrics store)", settings.prometheus_url)
        return RecordingSource(PrometheusSource.from_settings(settings), store)
    return StoreSource(store)


async def metrics_endpoint(_request: Request) -> Response:
    """The controller's Prometheus metrics (decisions, replica counts, forecasts)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def serve_controller(
    settings: Settings,
    *,
    host: str,
    port: int,
    state_dir: Path,
    tick_s: float = 1.0,
    run_loop: bool = True,
) -> int:
    """Serve until SIGINT/SIGTERM; on the way out the loop stops and local replicas are shut down."""
    from controller.api.app import create_app
    from controller.dashboard import dashboard_router

    if migrate.current_revision(settings.database_url) is None:
        logger.error("the database is not migrated: run `prewarm db upgrade` first")
        return 2
    engine = create_engine_for_url(settings.database_url)
    store = MetricsStore(engine, max_future_skew_s=settings.max_future_skew_s)
    runtime: ControllerRuntime | None = None
    if run_loop:
        loop = ReconcileLoop(engine, metrics_source(settings, store), state_root=state_dir)
        runtime = ControllerRuntime(
            engine,
            loop,
            ForecastJob(engine, settings),
            tick_s=tick_s,
            forecast_poll_s=settings.forecast_poll_interval_s,
        )
    app = create_app(engine, settings=settings, runtime=runtime)
    app.include_router(dashboard_router(engine))
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal with the handler it found; no-op handlers make
    # that harmless, so the runtime below still stops (and local replicas shut down) before the process exits.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    if runtime is not None:
        await runtime.start()
    logger.info(
        "controller listening on http://%s:%d (API under /api/v1, dashboard at /dashboard, metrics at /metrics)",
        host,
        port,
    )
    try:
        await server.serve()
    finally:
        if runtime is not None:
            await runtime.stop()
        engine.dispose()
    return 0
