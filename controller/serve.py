"""Assemble and serve the controller process: store, leases, metrics source, loop, forecasts, maintenance, API."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from controller.forecast_job import ForecastJob
from controller.leases import LeaseConfigError, LeaseManager, LeaseTimings, StoreSharedError, default_identity
from controller.loop import MetricsSource, ReconcileLoop
from controller.runtime import ControllerRuntime
from controller.sources.store import RecordingSource, StoreSource
from prewarm.db import migrate
from prewarm.db.engine import create_engine_for_url
from prewarm.db.retention import Maintenance, RetentionPolicy
from prewarm.db.store import MetricsStore
from prewarm.settings import Settings

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


def metrics_source(settings: Settings, store: MetricsStore) -> MetricsSource:
    """Prometheus when ``PREWARM_PROMETHEUS_URL`` is set, otherwise prewarm's own metrics store."""
    if settings.prometheus_url:
        from controller.sources.prometheus import PrometheusSource

        logger.info("observations from Prometheus at %s (kept in the metrics store)", settings.prometheus_url)
        return RecordingSource(PrometheusSource.from_settings(settings), store)
    return StoreSource(store, late_s=settings.observation_late_s)


async def metrics_endpoint(_request: Request) -> Response:
    """The controller's Prometheus metrics (decisions, replica counts, forecasts, pass timing, leases), rendered
    in a worker thread: with a fleet that is tens of thousands of series, not work for the event loop."""
    return Response(await run_in_threadpool(generate_latest), media_type=CONTENT_TYPE_LATEST)


def lease_manager(settings: Settings, engine: Engine) -> LeaseManager:
    timings = LeaseTimings(
        lease_s=settings.lease_duration_s,
        renew_deadline_s=settings.lease_renew_deadline_s,
        retry_s=settings.lease_retry_s,
    )
    return LeaseManager(
        engine,
        buckets=settings.lease_buckets,
        timings=timings,
        identity=settings.controller_identity or default_identity(),
    )


def health_routes(runtime: ControllerRuntime | None) -> tuple[Endpoint, Endpoint]:
    """/livez (the loop completes passes) and /readyz (the store answers; which buckets are held)."""

    async def livez(_request: Request) -> Response:
        if runtime is None:
            return JSONResponse({"live": True, "detail": "API only (--no-loop)"})
        health = runtime.health()
        return JSONResponse(asdict(health), status_code=200 if health.live else 503)

    async def readyz(_request: Request) -> Response:
        if runtime is None:
            return JSONResponse({"ready": True, "detail": "API only (--no-loop)"})
        health = runtime.health()
        return JSONResponse(asdict(health), status_code=200 if health.ready else 503)

    return livez, readyz


async def serve_controller(
    settings: Settings,
    *,
    host: str,
    port: int,
    state_dir: Path,
    tick_s: float = 0.1,
    run_loop: bool = True,
) -> int:
    """Serve until SIGINT/SIGTERM; on the way out the loop stops, local replicas shut down, leases are released."""
    from controller.api.app import create_app
    from controller.dashboard import dashboard_router

    if migrate.current_revision(settings.database_url) is None:
        logger.error("the database is not migrated: run `prewarm db upgrade` first")
        return 2
    engine = create_engine_for_url(settings.database_url, pool_size=max(5, settings.reconcile_workers + 4))
    store = MetricsStore(engine, max_future_skew_s=settings.max_future_skew_s)
    runtime: ControllerRuntime | None = None
    if run_loop:
        leases = lease_manager(settings, engine)
        try:
            leases.tick()  # a second controller on SQLite, or a bucket-count mismatch, stops here
        except (StoreSharedError, LeaseConfigError) as error:
            logger.error("%s", error)
            engine.dispose()
            return 2
        except Exception as error:  # the store is down at start: the lease thread keeps trying
            logger.warning("first lease round failed (%s); retrying in the background", error)
        loop = ReconcileLoop(
            engine,
            metrics_source(settings, store),
            state_root=state_dir,
            leases=leases,
            workers=settings.reconcile_workers,
            max_threads=settings.reconcile_max_threads,
        )
        runtime = ControllerRuntime(
            engine,
            loop,
            ForecastJob(engine, settings) if settings.forecasts_enabled else None,
            leases=leases,
            maintenance=Maintenance(engine, RetentionPolicy.from_settings(settings)),
            maintenance_interval_s=settings.maintenance_interval_s,
            tick_s=tick_s,
            forecast_poll_s=settings.forecast_poll_interval_s,
            liveness_stale_s=settings.liveness_stale_s,
        )
        logger.info("controller %s: %d lease buckets", leases.identity, leases.buckets)
    app = create_app(engine, settings=settings, runtime=runtime)
    app.include_router(dashboard_router(engine, buckets=settings.lease_buckets))
    # No ``*_created`` series: a sample per counter per deployment that no alert or dashboard reads (a sixth of
    # the exposition of a 1,000-deployment fleet).
    disable_created_metrics()
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    livez, readyz = health_routes(runtime)
    app.add_route("/livez", livez, include_in_schema=False)
    app.add_route("/readyz", readyz, include_in_schema=False)
    # log_config=None: uvicorn logs through our handlers (text or JSON, secrets redacted).
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)
    server = uvicorn.Server(config)
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal with the handler it found; no-op handlers make
    # that harmless, so the runtime below still stops (and local replicas shut down) before the process exits.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    exit_code = 0
    if runtime is not None:

        def fatal() -> None:
            nonlocal exit_code
            exit_code = 2
            server.should_exit = True

        runtime.on_fatal = fatal
        await runtime.start()
    keda_server = await _start_keda(settings, host, engine, runtime) if settings.keda_port else None
    logger.info(
        "controller listening on http://%s:%d (API under /api/v1, dashboard at /dashboard, metrics at /metrics, "
        "probes at /livez and /readyz)",
        host,
        port,
    )
    try:
        await server.serve()
    finally:
        if keda_server is not None:
            await keda_server.stop(grace=5)
        if runtime is not None:
            await runtime.stop()
        engine.dispose()
    return exit_code


async def _start_keda(settings: Settings, host: str, engine: Engine, runtime: ControllerRuntime | None) -> Any:
    """KEDA's external scaler on ``PREWARM_KEDA_PORT`` (docs/kubernetes.md, deploy/k8s/keda/)."""
    from controller.keda.scaler import ExternalScaler, start_server
    from controller.keda.views import store_lookup

    return await start_server(ExternalScaler(store_lookup(engine, runtime)), host, settings.keda_port)
