"""The controller process's moving parts, started and stopped with the API server: the lease manager (its own
thread, so that renewals never wait on the event loop), the reconcile loop, the scheduled forecasts of the
deployments this controller owns, and the store's rollup and retention. The API sees it through ``status()``,
``refresh_forecast()`` and ``health()``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from controller.api.forecast_refresh import ForecasterUnavailable
from controller.forecast_job import ForecastJob
from controller.leases import LeaseConfigError, LeaseManager, StoreSharedError
from controller.loop import ReconcileLoop
from prewarm.db.retention import Maintenance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    """What /livez and /readyz report."""

    live: bool
    ready: bool
    last_pass_age_s: float | None
    store_reachable: bool
    identity: str
    buckets: list[int]
    deployments_owned: int
    detail: str


class ControllerRuntime:
    """Runs the loop, the lease manager, forecasts and maintenance. Fits run in one worker thread, one at a time
    (scheduled and on-demand alike), so neither the API nor the loop ever waits on a model."""

    def __init__(
        self,
        engine: Engine,
        loop: ReconcileLoop,
        forecast_job: ForecastJob | None,
        *,
        leases: LeaseManager | None = None,
        maintenance: Maintenance | None = None,
        maintenance_interval_s: float = 60.0,
        tick_s: float = 0.1,
        forecast_poll_s: float = 30.0,
        liveness_stale_s: float = 15.0,
    ) -> None:
        self.engine = engine
        self.loop = loop
        self.forecast_job = forecast_job
        self.leases = leases
        self.maintenance = maintenance
        self.maintenance_interval_s = maintenance_interval_s
        self.tick_s = tick_s
        self.forecast_poll_s = forecast_poll_s
        self.liveness_stale_s = liveness_stale_s
        self.started_at = time.time()
        self.fatal: str | None = None  # set when this controller must stop (e.g. a second one on SQLite)
        self._fit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast-fit")
        self._stop = asyncio.Event()
        self._thread_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._wake_forecasts = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.on_fatal: Any = None  # called (no arguments) when a background part cannot go on
        self._event_loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread_stop.clear()
        if self.leases is not None:
            leases = self.leases
            leases.on_change = self._buckets_changed
            self._threads.append(threading.Thread(target=self._run_leases, name="leases", daemon=True))
        if self.maintenance is not None:
            self._threads.append(threading.Thread(target=self._run_maintenance, name="maintenance", daemon=True))
        for thread in self._threads:
            thread.start()
        self._tasks = [asyncio.create_task(self.loop.run(self._stop, self.tick_s), name="reconcile")]
        if self.forecast_job is not None:
            self._tasks.append(asyncio.create_task(self._forecast_schedule(), name="forecasts"))

    async def stop(self) -> None:
        self._stop.set()
        self._wake_forecasts.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=30)
            except TimeoutError:
                task.cancel()
        self._fit_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.loop.close)
        self._thread_stop.set()  # leases are released last: a standby takes over once our backends are closed
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 10)

    # -- what the API asks ---------------------------------------------------------------------------------

    def status(self, deployment: str) -> dict[str, Any] | None:
        return self.loop.status(deployment)

    def health(self) -> Health:
        now = time.time()
        last = self.loop.last_pass_completed
        age = now - last if last is not None else None
        live = self.fatal is None and (
            (age is not None and age < self.liveness_stale_s)
            or (last is None and now - self.started_at < self.liveness_stale_s)
        )
        reachable = self.leases.store_reachable() if self.leases is not None else self.loop.database_ok
        owned = self.leases.owned() if self.leases is not None else {}
        if self.fatal is not None:
            detail = self.fatal
        elif not live:
            detail = f"no reconcile pass completed for {age:.0f} s" if age is not None else "no pass yet"
        elif not reachable:
            detail = "the store is unreachable: leases lapse and replica counts are held"
        else:
            detail = "ok"
        return Health(
            live=live,
            ready=reachable and self.fatal is None,
            last_pass_age_s=age,
            store_reachable=reachable,
            identity=self.loop.identity,
            buckets=sorted(owned),
            deployments_owned=len(self.loop.owned_names()),
            detail=detail,
        )

    async def refresh_forecast(self, deployment: str) -> int | None:
        """Fit and store one deployment's forecast now, whatever its schedule; returns the run id."""
        job = self.forecast_job
        if job is None:
            raise ForecasterUnavailable("this controller runs without a forecaster")
        return await asyncio.get_running_loop().run_in_executor(self._fit_pool, job.refresh, deployment)

    def trigger_forecasts(self) -> None:
        """Look for due forecasts now rather than at the next poll (e.g. after a deployment was created)."""
        self._wake_forecasts.set()

    # -- background parts ----------------------------------------------------------------------------------

    def _buckets_changed(self, gained: set[int], lost: set[int]) -> None:
        if self.leases is not None:
            self.loop.metrics.set_buckets(set(self.leases.owned()), self.leases.buckets)
        if gained and self._event_loop is not None:
            with contextlib.suppress(RuntimeError):  # the event loop may be gone at shutdown
                self._event_loop.call_soon_threadsafe(self._wake_forecasts.set)

    def _run_leases(self) -> None:
        assert self.leases is not None
        try:
            self.leases.run(self._thread_stop)
        except (StoreSharedError, LeaseConfigError) as error:
            self.fatal = str(error)
            logger.error("%s", error)
            if self.on_fatal is not None:
                self.on_fatal()

    def _run_maintenance(self) -> None:
        assert self.maintenance is not None
        while not self._thread_stop.wait(self.maintenance_interval_s):
            try:
                self.maintenance.run_once()
            except Exception:  # the store is down, or a bug: try again next interval
                logger.exception("store maintenance (rollup, retention) failed")

    async def _forecast_schedule(self) -> None:
        """Every poll, forecast the owned deployments whose latest forecast is older than their refit interval."""
        job = self.forecast_job
        assert job is not None
        while not self._stop.is_set():
            owned = self.loop.owned_names()
            if owned:
                try:
                    await asyncio.get_running_loop().run_in_executor(self._fit_pool, job.run_once, owned)
                except Exception:  # e.g. the database is down: the job logs per deployment; try again next poll
                    logger.exception("scheduled forecasts failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_forecasts.wait(), timeout=self.forecast_poll_s)
            self._wake_forecasts.clear()
