"""The controller process's moving parts: the reconcile loop and the scheduled forecasts, started and stopped
together with the API server. The API sees it through ``status()`` and ``refresh_forecast()``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine

from controller.api.forecast_refresh import ForecasterUnavailable
from controller.forecast_job import ForecastJob
from controller.loop import ReconcileLoop

logger = logging.getLogger(__name__)


class ControllerRuntime:
    """Runs the loop and the forecast schedule as asyncio tasks. Fits run in one worker thread, one at a time
    (scheduled and on-demand alike), so neither the API nor the loop ever waits on a model."""

    def __init__(
        self,
        engine: Engine,
        loop: ReconcileLoop,
        forecast_job: ForecastJob | None,
        *,
        tick_s: float = 1.0,
        forecast_poll_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.loop = loop
        self.forecast_job = forecast_job
        self.tick_s = tick_s
        self.forecast_poll_s = forecast_poll_s
        self._fit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast-fit")
        self._stop = asyncio.Event()
        self._wake_forecasts = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._stop.clear()
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

    def status(self, deployment: str) -> dict[str, Any] | None:
        return self.loop.status(deployment)

    async def refresh_forecast(self, deployment: str) -> int | None:
        """Fit and store one deployment's forecast now, whatever its schedule; returns the run id."""
        job = self.forecast_job
        if job is None:
            raise ForecasterUnavailable("this controller runs without a forecaster")

        return await asyncio.get_running_loop().run_in_executor(self._fit_pool, job.refresh, deployment)

    def trigger_forecasts(self) -> None:
        """Look for due forecasts now rather than at the next poll (e.g. after a deployment was created)."""
        self._wake_forecasts.set()

    async def _forecast_schedule(self) -> None:
        """Every poll, forecast the deployments whose latest forecast is older than their policy's refit interval."""
        job = self.forecast_job
        assert job is not None
        while not self._stop.is_set():
            try:
                await asyncio.get_running_loop().run_in_executor(self._fit_pool, job.run_once)
            except Exception:  # e.g. the database is down: the job logs per deployment; try again next poll
                logger.exception("scheduled forecasts failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_forecasts.wait(), timeout=self.forecast_poll_s)
            self._wake_forecasts.clear()
