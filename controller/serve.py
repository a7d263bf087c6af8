"""Assemble and serve the controller process: store, metrics source, loop, forecasts, API."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from controller.loop import MetricsSource, ReconcileLoop
from controller.runtime import ControllerRuntime, ForecastJob
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


def forecast_job(settings: Settings, store: MetricsStore) -> ForecastJob | None:
    """The forecaster's per-deployment job (fit on stored history, write the forecast)."""
    from forecaster.jobs import ForecastJobRunner

    runner = ForecastJobRunner(store)
    return runner.run_for


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

    if migrate.current_revision(settings.database_url) is None:
        logger.error("the database is not migrated: run `prewarm db upgrade` first")
        return 2
    engine = create_engine_for_url(settings.database_url)
    store = MetricsStore(engine, max_future_skew_s=settings.max_future_skew_s)
    runtime: ControllerRuntime | None = None
    if run_loop:
        loop = ReconcileLoop(engine, metrics_source(settings, store), state_root=state_dir)
        runtime = ControllerRuntime(engine, loop, forecast_job(settings, store), tick_s=tick_s)
    app = create_app(engine, settings=settings, runtime=runtime)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    if runtime is not None:
        await runtime.start()
    logger.info("controller listening on http://%s:%d (API under /api/v1)", host, port)
    try:
        await server.serve()
    finally:
        if runtime is not None:
            await runtime.stop()
        engine.dispose()
    return 0
