"""The scheduled forecast job: per deployment, read its history, run the forecasting pipeline, store the forecast.

A thin shell around ``forecaster.pipeline.run_pipeline`` (the function the simulator calls too): reading the policy,
the measured startup and the history from the store, and writing ``ForecastRun`` + ``ForecastPoint`` rows happen
here and only here. A deployment is due when its newest forecast is older than ``plan.refit_in_s`` of the history it
was fitted on. The pipeline's memory (model choice, band residuals) is kept per deployment in this process; after a
restart the first forecast re-assesses the model and seeds the calibration from that backtest. One deployment's
failure is logged and never stops the others; a failing model is replaced by the fallback chain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from controller import repository
from controller.forecast_plan import ForecasterSettings, plan_for
from controller.policy import ScalingPolicy
from forecaster.pipeline import PipelineForecast, PipelineState, run_pipeline
from forecaster.types import History

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from prewarm.settings import Settings

log = logging.getLogger(__name__)


class ForecastJob:
    """Runs due forecasts for all (or some) deployments; keeps the selection cache between runs."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        from prewarm.db.store import MetricsStore

        self.engine = engine
        self.settings = settings
        self.store = MetricsStore(engine, settings.max_future_skew_s)
        self.forecaster_settings = ForecasterSettings.from_settings(settings)
        self.states: dict[str, PipelineState] = {}  # the pipeline's memory per deployment

    def run_once(self, deployments: Sequence[str] | None = None, now: datetime | None = None) -> list[int]:
        """Forecast every due deployment; returns the ids of the forecast runs written."""
        from sqlalchemy import select

        from prewarm.db.models import Deployment

        now = now or datetime.now(UTC)
        with self.engine.connect() as connection:
            rows = [
                (int(deployment_id), str(name))
                for deployment_id, name in connection.execute(
                    select(Deployment.id, Deployment.name).order_by(Deployment.name)
                )
            ]
        if deployments:
            wanted = set(deployments)
            rows = [(deployment_id, name) for deployment_id, name in rows if name in wanted]
        due = self._due([deployment_id for deployment_id, _ in rows], now)
        written = []
        for deployment_id, name in rows:
            if deployment_id not in due:
                continue
            try:
                run_id = self.run_deployment(deployment_id, name, now)
            except Exception:  # one deployment's trouble must not stop the others
                log.exception("forecast job: deployment %s failed", name)
                continue
            if run_id is not None:
                written.append(run_id)
        return written

    def _due(self, ids: list[int], now: datetime) -> set[int]:
        """The deployments whose newest forecast needs a refit, checked for all of them in three queries (a fleet
        is polled every ``forecast_poll_interval_s``; most of it is not due)."""
        from sqlalchemy import and_, func, select, tuple_

        from prewarm.db.engine import session_factory
        from prewarm.db.models import ForecastRun, Policy

        if not ids:
            return set()
        with session_factory(self.engine)() as session:
            versions = session.execute(
                select(Policy.deployment_id, func.max(Policy.version))
                .where(Policy.deployment_id.in_(ids))
                .group_by(Policy.deployment_id)
            ).all()
            latest = [(deployment_id, version) for deployment_id, version in versions]
            specs: dict[int, Any] = {}
            if latest:
                query = select(Policy.deployment_id, Policy.spec).where(
                    tuple_(Policy.deployment_id, Policy.version).in_(latest)
                )
                specs = {deployment_id: spec for deployment_id, spec in session.execute(query)}
            newest = (
                select(ForecastRun.deployment_id, func.max(ForecastRun.created_at).label("created_at"))
                .where(ForecastRun.deployment_id.in_(ids))
                .group_by(ForecastRun.deployment_id)
                .subquery()
            )
            runs = {
                deployment_id: (created_at, step_s, detail)
                for deployment_id, created_at, step_s, detail in session.execute(
                    select(ForecastRun.deployment_id, ForecastRun.created_at, ForecastRun.step_s, ForecastRun.detail)
                    .join(newest, and_(ForecastRun.deployment_id == newest.c.deployment_id,
                                       ForecastRun.created_at == newest.c.created_at))
                )
            }
        due: set[int] = set()
        for deployment_id in ids:
            run = runs.get(deployment_id)
            if run is None:
                due.add(deployment_id)
                continue
            try:
                policy = ScalingPolicy.model_validate(specs.get(deployment_id, {}))
            except ValueError:  # an invalid stored policy: run_deployment logs it with the deployment's name
                due.add(deployment_id)
                continue
            created_at, step_s, detail = run
            plan = plan_for(policy, None, self.forecaster_settings)
            history_s = float((detail or {}).get("history_points", 0)) * step_s
            if plan.due(now.timestamp(), created_at.timestamp(), history_s):
                due.add(deployment_id)
        return due

    def refresh(self, name: str, now: datetime | None = None) -> int | None:
        """Forecast deployment ``name`` now, whatever its schedule; the run's id, or None without history.

        Raises LookupError for an unknown deployment."""
        from sqlalchemy import select

        from prewarm.db.models import Deployment

        with self.engine.connect() as connection:
            deployment_id = connection.execute(select(Deployment.id).where(Deployment.name == name)).scalar()
        if deployment_id is None:
            raise LookupError(f"unknown deployment {name!r}")
        return self.run_deployment(deployment_id, name, now or datetime.now(UTC), force=True)

    def run_deployment(self, deployment_id: int, name: str, now: datetime, force: bool = False) -> int | None:
        """Forecast one deployment if it is due (or ``force``); returns the new run's id, or None when not due or
        there is no data."""
        from prewarm import metric_names
        from prewarm.db.engine import session_factory

        with session_factory(self.engine)() as session:
            try:
                _, policy = repository.current_policy(session, deployment_id)
            except repository.NotFoundError:
                policy = ScalingPolicy()
            latest = repository.latest_forecast(session, deployment_id)
            startup = repository.replica_startup_s(session, deployment_id)
        plan = plan_for(policy, startup, self.forecaster_settings)
        epoch = now.timestamp()
        if not force and latest is not None:
            last_history_s = float(latest[0].detail.get("history_points", 0)) * latest[0].step_s
            if not plan.due(epoch, latest[0].created_at.timestamp(), last_history_s):
                return None
        start, end = plan.window(epoch)
        series = self.store.resample(
            name,
            metric_names.REQUESTS_RPS,
            datetime.fromtimestamp(start, UTC),
            datetime.fromtimestamp(end, UTC),
            plan.step_s,
            plan.statistic,
        )
        history = History(start, plan.step_s, series.to_numpy(dtype=np.float64))
        started = time.perf_counter()
        result, self.states[name] = run_pipeline(history, plan, self.states.get(name, PipelineState()), epoch)
        elapsed_s = time.perf_counter() - started
        if result is None:
            log.info("forecast job: %s has no request-rate history yet", name)
            return None
        run_id = self.write(deployment_id, result, now, elapsed_s)
        log.info(
            "forecast job: %s model=%s horizon=%.0fs points=%d calibrated=%s run=%d (%.2fs)",
            name, result.forecast.model, result.forecast.horizon_s, len(result.forecast),
            result.calibration.applied, run_id, elapsed_s,
        )  # fmt: skip
        return run_id

    def write(self, deployment_id: int, result: PipelineForecast, now: datetime, elapsed_s: float) -> int:
        from prewarm.db.engine import session_factory
        from prewarm.db.models import ForecastPoint, ForecastRun

        forecast = result.forecast
        selection = result.selection
        scored = selection.result.scores.get(forecast.model) if selection and selection.result else None
        detail: dict[str, Any] = {
            "requested_model": forecast.requested_model,
            "notes": list(forecast.notes),
            "history_peak_rps": result.history_peak,
            "history_points": result.history_points,
            "fit_s": elapsed_s,
            "calibration": {
                "residuals": result.calibration.residuals,
                "applied": result.calibration.applied,
                "upper_scale": result.calibration.upper_scale,
                "lower_scale": result.calibration.lower_scale,
            },
        }
        if scored is not None:
            detail["recent_pinball_upper"] = scored.pinball_upper
            detail["recent_coverage"] = scored.coverage
        if selection is not None and selection.result is not None:
            scores = selection.result.scores
            detail["selection"] = {n: round(s.mae, 6) for n, s in scores.items()}  # backtest MAE, as before
            detail["selection_pinball_upper"] = {n: round(s.pinball_upper, 6) for n, s in scores.items()}
        with session_factory(self.engine)() as session, session.begin():
            run = ForecastRun(
                deployment_id=deployment_id,
                created_at=now,
                model_name=forecast.model,
                step_s=forecast.step_s,
                horizon_s=forecast.horizon_s,
                quantile_low=forecast.quantiles[0],
                quantile_high=forecast.quantiles[1],
                recent_mae=scored.mae if scored is not None else None,
                detail=detail,
            )
            session.add(run)
            session.flush()
            session.add_all(
                ForecastPoint(
                    run_id=run.id,
                    target_ts=datetime.fromtimestamp(float(ts), UTC),
                    point=float(p),
                    lower=float(lo),
                    upper=float(hi),
                )
                for ts, p, lo, hi in zip(
                    forecast.target_ts, forecast.point, forecast.lower, forecast.upper, strict=True
                )
            )
            run_id = run.id
        return run_id


class ForecastWorker:
    """Runs the job in a background thread every ``forecast_poll_interval_s``; ``start`` returns at once."""

    def __init__(
        self,
        job: ForecastJob,
        poll_interval_s: float,
        deployments: Sequence[str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.job = job
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self.deployments = deployments
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="forecast-worker", daemon=True)
        self.runs_completed = 0

    def start(self) -> None:
        self._thread.start()

    def trigger(self) -> None:
        """Check for due deployments now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.job.run_once(self.deployments, now=self.clock())
            except Exception:  # e.g. the database is down: log and try again at the next poll
                log.exception("forecast worker: run failed")
            self.runs_completed += 1
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()


def run_once(engine: Engine, settings: Settings, deployments: Sequence[str] | None = None) -> list[int]:
    return ForecastJob(engine, settings).run_once(deployments)


def run_forever(engine: Engine, settings: Settings, deployments: Sequence[str] | None = None) -> None:
    worker = ForecastWorker(ForecastJob(engine, settings), settings.forecast_poll_interval_s, deployments)
    worker.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        worker.stop()
