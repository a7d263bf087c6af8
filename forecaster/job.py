"""The scheduled forecast job: per deployment, read history, select and fit a model, store the forecast.

A thin shell around the pure pieces (``History``, ``select_model``, ``forecast_with_fallback``): reading from the
metrics store and writing ``ForecastRun`` + ``ForecastPoint`` rows happen here and only here. A deployment is due
when its newest forecast is older than its policy's ``forecast_refit_interval_s``. One deployment's failure is
logged and never stops the others; a failing model is replaced by the fallback chain.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from forecaster.registry import forecast_with_fallback, make_model
from forecaster.selection import Selection, select_model
from forecaster.timescale import compress, stretch
from forecaster.types import Forecast, History

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from prewarm.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForecastPlan:
    """What to forecast for one deployment, taken from its policy."""

    model: str  # a model name or "auto"
    step_s: float
    history_s: float
    horizon_s: float  # what one decision needs: lead time (replica startup + margin) + the policy's horizon
    span_s: (
        float  # how far the stored forecast reaches: ``horizon_s`` for every decision until the next refit
    )
    refit_interval_s: (
        float  # for a long history; a young one is refitted more often (policy.refit_interval_s)
    )
    statistic: str = "mean"  # per bin: the mean rate or the highest per-second rate
    time_compression: float = 1.0  # > 1 for a time-compressed replay (forecaster.timescale)


@dataclass
class SelectionCache:
    """The last selection per deployment and when it was made (selection is re-run on its own schedule)."""

    entries: dict[str, tuple[float, Selection]] = field(default_factory=dict)

    def get(self, deployment: str, now: float, max_age_s: float) -> Selection | None:
        entry = self.entries.get(deployment)
        return entry[1] if entry and now - entry[0] < max_age_s else None

    def put(self, deployment: str, now: float, selection: Selection) -> None:
        self.entries[deployment] = (now, selection)


def plan_for(policy: Any, startup_s: float | None) -> ForecastPlan:
    """The forecast a ``ScalingPolicy`` needs: lead time plus the policy's horizon, for every decision until the
    next refit (the forecast starts at the last complete bin, up to one step before now)."""
    startup = startup_s if startup_s is not None else policy.default_replica_startup_s
    horizon = max(startup + policy.lead_time_margin_s + policy.horizon_s, policy.forecast_step_s)
    return ForecastPlan(
        model=policy.forecast_model,
        step_s=policy.forecast_step_s,
        history_s=policy.forecast_history_s,
        horizon_s=horizon,
        span_s=horizon + policy.forecast_refit_interval_s + policy.forecast_step_s,
        refit_interval_s=policy.forecast_refit_interval_s,
        statistic=policy.forecast_statistic,
        time_compression=policy.forecast_time_compression,
    )


def make_forecast(
    history: History,
    plan: ForecastPlan,
    selection: Selection | None,
    candidates: Sequence[str],
    selection_eval_s: float,
    quantiles: tuple[float, float],
) -> tuple[Forecast, Selection | None]:
    """Pure: the forecast for ``plan`` from ``history`` (selecting a model first when 'auto' has none yet).

    Selection scores the models on what a decision needs (``plan.horizon_s``); the forecast reaches ``span_s``.
    """
    model_history = stretch(history, plan.time_compression)
    compression = plan.time_compression
    span_steps = max(1, math.ceil(plan.span_s / history.step_s - 1e-9))
    if plan.model == "auto":
        if selection is None:
            selection = select_model(
                model_history,
                plan.horizon_s * compression,
                candidates,
                eval_s=selection_eval_s,
                quantiles=quantiles,
            )
        model_name = selection.model_name
    else:
        model_name = plan.model
    try:
        model = make_model(model_name)
    except ValueError:
        log.warning("unknown model %r in policy; using the fallback chain", model_name)
        model = make_model("profile")
    forecast = forecast_with_fallback(model, model_history, span_steps, quantiles)
    return compress(forecast, compression), selection


class ForecastJob:
    """Runs due forecasts for all (or some) deployments; keeps the selection cache between runs."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        from prewarm.db.store import MetricsStore

        self.engine = engine
        self.settings = settings
        self.store = MetricsStore(engine, settings.max_future_skew_s)
        self.selections = SelectionCache()
        self.candidates = tuple(c.strip() for c in settings.forecast_candidates.split(",") if c.strip())
        self.quantiles = (settings.forecast_quantile_low, settings.forecast_quantile_high)

    def run_once(self, deployments: Sequence[str] | None = None, now: datetime | None = None) -> list[int]:
        """Forecast every due deployment; returns the ids of the forecast runs written."""
        from sqlalchemy import select

        from prewarm.db.models import Deployment

        now = now or datetime.now(UTC)
        with self.engine.connect() as connection:
            rows = connection.execute(select(Deployment.id, Deployment.name).order_by(Deployment.name)).all()
        written = []
        for deployment_id, name in rows:
            if deployments and name not in deployments:
                continue
            try:
                run_id = self.run_deployment(deployment_id, name, now)
            except Exception:  # one deployment's trouble must not stop the others
                log.exception("forecast job: deployment %s failed", name)
                continue
            if run_id is not None:
                written.append(run_id)
        return written

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
        from controller import repository
        from controller.policy import ScalingPolicy
        from prewarm import metric_names
        from prewarm.db.engine import session_factory

        with session_factory(self.engine)() as session:
            try:
                _, policy = repository.current_policy(session, deployment_id)
            except repository.NotFoundError:
                policy = ScalingPolicy()
            latest = repository.latest_forecast(session, deployment_id)
            startup = repository.replica_startup_s(session, deployment_id)
        plan = plan_for(policy, startup)
        if not force and latest is not None:
            # A young history is refitted more often (a fraction of its length), a long one on the schedule.
            history_s = float(latest[0].detail.get("history_points", 0)) * latest[0].step_s
            if (now - latest[0].created_at).total_seconds() < policy.refit_interval_s(history_s):
                return None
        end_epoch = math.floor(now.timestamp() / plan.step_s) * plan.step_s  # complete bins only
        end = datetime.fromtimestamp(end_epoch, UTC)
        series = self.store.resample(
            name,
            metric_names.REQUESTS_RPS,
            end - timedelta(seconds=plan.history_s),
            end,
            plan.step_s,
            "max" if plan.statistic == "max" else "mean",
        )
        values = series.to_numpy(dtype=np.float64)
        if not np.isfinite(values).any():
            log.info("forecast job: %s has no request-rate history yet", name)
            return None
        first = int(np.flatnonzero(np.isfinite(values))[0])  # a young deployment: start at its first sample
        history = History(end_epoch - (len(values) - first) * plan.step_s, plan.step_s, values[first:])
        cached = self.selections.get(name, now.timestamp(), self.settings.forecast_reselect_interval_s)
        started = time.perf_counter()
        forecast, selection = make_forecast(
            history, plan, cached, self.candidates, self.settings.forecast_selection_eval_s, self.quantiles
        )
        elapsed_s = time.perf_counter() - started
        if selection is not None and selection is not cached:
            self.selections.put(name, now.timestamp(), selection)
        run_id = self.write(deployment_id, forecast, selection, history, now, elapsed_s)
        log.info(
            "forecast job: %s model=%s horizon=%.0fs points=%d run=%d (%.2fs)",
            name, forecast.model, forecast.horizon_s, len(forecast), run_id, elapsed_s,
        )  # fmt: skip
        return run_id

    def write(
        self,
        deployment_id: int,
        forecast: Forecast,
        selection: Selection | None,
        history: History,
        now: datetime,
        elapsed_s: float,
    ) -> int:
        from prewarm.db.engine import session_factory
        from prewarm.db.models import ForecastPoint, ForecastRun

        recent_mae = selection.recent_mae if selection and selection.model_name == forecast.model else None
        finite = history.values[np.isfinite(history.values)]
        detail: dict[str, Any] = {
            "requested_model": forecast.requested_model,
            "notes": list(forecast.notes),
            "history_peak_rps": float(finite.max()) if finite.size else None,
            "history_points": int(finite.size),
            "fit_s": elapsed_s,
        }
        if selection is not None and selection.result is not None:
            detail["selection"] = {n: round(s.mae, 6) for n, s in selection.result.scores.items()}
        with session_factory(self.engine)() as session, session.begin():
            run = ForecastRun(
                deployment_id=deployment_id,
                created_at=now,
                model_name=forecast.model,
                step_s=forecast.step_s,
                horizon_s=forecast.horizon_s,
                quantile_low=forecast.quantiles[0],
                quantile_high=forecast.quantiles[1],
                recent_mae=recent_mae,
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
