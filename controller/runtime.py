"""The controller process's moving parts: the reconcile loop and the scheduled forecasts, started and stopped
together with the API server. The API sees it through ``status()`` and ``refresh_forecast()``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from controller import repository
from controller.loop import ReconcileLoop
from prewarm.db.engine import session_factory
from prewarm.db.models import Deployment

logger = logging.getLogger(__name__)

ForecastJob = Callable[[str], Any]  # runs one deployment's forecast (fit + store); blocking


class ControllerRuntime:
    """Runs the loop and the forecast schedule as asyncio tasks; fits run in one worker thread, one at a time,
    so neither the API nor the loop ever waits on a model."""

    def __init__(
        self,
        engine: Engine,
        loop: ReconcileLoop,
        forecast_job: ForecastJob | None,
        *,
        tick_s: float = 1.0,
        schedule_check_s: float = 5.0,
    ) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)
        self.loop = loop
        self.forecast_job = forecast_job
        self.tick_s = tick_s
        self.schedule_check_s = schedule_check_s
        self.next_forecast_at: dict[str, float] = {}
        self._fit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast-fit")
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self.loop.run(self._stop, self.tick_s), name="reconcile")]
        if self.forecast_job is not None:
            self._tasks.append(asyncio.create_task(self._forecast_schedule(), name="forecasts"))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, timeout=30)
            except TimeoutError:
                task.cancel()
        self._fit_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.loop.close)

    def status(self, deployment: str) -> dict[str, Any] | None:
        return self.loop.status(deployment)

    async def refresh_forecast(self, deployment: str) -> Any:
        """Run one deployment's forecast now (in the fit worker) and return the job's result."""
        if self.forecast_job is None:
            raise RuntimeError("no forecaster is configured in this controller")
        job = self.forecast_job
        result = await asyncio.get_running_loop().run_in_executor(self._fit_pool, job, deployment)
        self.next_forecast_at.pop(deployment, None)
        return result

    async def _forecast_schedule(self) -> None:
        while not self._stop.is_set():
            for name, interval_s in await asyncio.to_thread(self._refit_intervals):
                now = time.time()
                if now < self.next_forecast_at.get(name, 0.0):
                    continue
                self.next_forecast_at[name] = now + interval_s
                try:
                    await self.refresh_forecast(name)
                except Exception:  # a failing model is the job's to replace; anything else is logged here
                    logger.exception("scheduled forecast for %s failed", name)
                self.next_forecast_at[name] = time.time() + interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.schedule_check_s)

    def _refit_intervals(self) -> list[tuple[str, float]]:
        try:
            with self.sessions() as session:
                result = []
                for deployment in session.scalars(select(Deployment).order_by(Deployment.name)):
                    _, policy = repository.current_policy(session, deployment.id)
                    result.append((deployment.name, policy.forecast_refit_interval_s))
                return result
        except (SQLAlchemyError, LookupError) as error:
            logger.warning("forecast schedule: cannot read deployments: %s", error)
            return []
