"""prewarm itself in the simulator: the live controller's decide() fed by the forecaster's public API.

The forecaster is refitted on the policy's schedule on the history seen so far (the view ends at ``now``), so a
decision never depends on the future.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from controller.decide import DecisionState, ForecastInput, Observations, decide
from controller.policy import ScalingPolicy
from controller.simulation.engine import ClusterView
from forecaster.timescale import compress, stretch

log = logging.getLogger(__name__)

DAY_S = 86_400


@dataclass
class PrewarmAutoscaler:
    """Calls ``decide()`` every ``policy.decision_interval_s`` with per-second observations and the latest forecast."""

    policy: ScalingPolicy
    name: str = "prewarm"
    use_forecast: bool = True
    state: DecisionState = field(default_factory=DecisionState)
    forecast: ForecastInput | None = None
    sources: Counter[str] = field(default_factory=Counter)
    forecast_log: list[tuple[int, float]] = field(default_factory=list)  # (t, upper rps decide() used)
    # (t, lower, point, upper) of the used forecast's interval holding t: the band as it was known, for the plot
    band_log: list[tuple[int, float, float, float]] = field(default_factory=list)
    refits: int = 0
    _last_refit_t: int | None = None
    _last_select_t: int | None = None
    _model: object | None = None
    _next_refit_in_s: float = 0.0  # the policy's refit cadence for the current history length

    @property
    def interval_s(self) -> int:
        return max(1, round(self.policy.decision_interval_s))

    def _refit(self, view: ClusterView) -> None:
        from forecaster import AutoForecaster, ForecastError, History, forecast_with_fallback, make_model

        step = max(1, round(self.policy.forecast_step_s))
        bins = min(view.t, round(self.policy.forecast_history_s)) // step
        if bins < 2:
            return
        block = view.arrivals[view.t - bins * step : view.t].reshape(bins, step)
        values = block.max(axis=1) if self.policy.forecast_statistic == "max" else block.mean(axis=1)
        history = History(view.now_ts - bins * step, float(step), values)
        history_s = float(bins * step)
        self._next_refit_in_s = self.policy.refit_interval_s(history_s)
        lead = view.cluster.startup_s + self.policy.lead_time_margin_s
        horizon_steps = math.ceil((self._next_refit_in_s + lead + self.policy.horizon_s) / step) + 1
        if self._model is None:
            self._model = (
                AutoForecaster()
                if self.policy.forecast_model == "auto"
                else make_model(self.policy.forecast_model)
            )
        model = self._model
        compression = self.policy.forecast_time_compression  # > 1 only for time-compressed replays
        model_history = stretch(history, compression)
        if isinstance(model, AutoForecaster) and (
            self._last_select_t is None or view.t - self._last_select_t >= DAY_S / compression
        ):
            model.reselect(model_history, horizon_steps * step * compression)
            self._last_select_t = view.t
        try:
            forecast = compress(
                forecast_with_fallback(model, model_history, horizon_steps),  # type: ignore[arg-type]
                compression,
            )
        except ForecastError as error:
            log.warning("forecast failed at t=%d: %s", view.t, error)
            return
        self.refits += 1
        self._last_refit_t = view.t
        self.forecast = ForecastInput(
            created_at=view.now_ts,
            target_ts=forecast.target_ts,
            upper=forecast.upper,
            step_s=forecast.step_s,
            point=forecast.point,
            lower=forecast.lower,
            model=forecast.model,
            history_peak_rps=float(np.nanmax(values)) if np.isfinite(values).any() else None,
            history_s=history_s,
        )

    def desired(self, view: ClusterView) -> int:
        if self.use_forecast and (
            self._last_refit_t is None or view.t - self._last_refit_t >= self._next_refit_in_s
        ):
            self._refit(view)
        window = max(1, round(self.policy.stable_window_s))
        ready = view.ready_series[-window:]
        with np.errstate(divide="ignore", invalid="ignore"):
            cpu = np.where(
                ready > 0,
                np.minimum(100.0, view.served[-window:] / (ready * view.cluster.replica_capacity_rps) * 100),
                np.nan,
            )
        observations = Observations(
            current_replicas=view.current,
            ready_replicas=view.ready,
            rps=view.arrivals[-window:],
            latency_p95_ms=view.p95_window_ms(window),
            cpu_percent=cpu,
            queue_length=view.queue[-window:],
            last_sample_ts=view.now_ts - 1.0,
            replica_startup_s=float(view.cluster.startup_s),
        )
        decision = decide(self.policy, observations, self.forecast, self.state, view.now_ts)
        self.state = decision.new_state
        self.sources[decision.source] += 1
        if decision.forecast_upper_rps is not None:  # decide() used the forecast
            self.forecast_log.append((view.t, decision.forecast_upper_rps))
            self._log_band(view)
        return decision.desired

    def _log_band(self, view: ClusterView) -> None:
        forecast = self.forecast
        if (
            forecast is None
            or forecast.point is None
            or forecast.lower is None
            or not forecast.target_ts.size
        ):
            return
        index = int((view.now_ts - float(forecast.target_ts[0])) // forecast.step_s)
        if 0 <= index < forecast.target_ts.size:
            self.band_log.append(
                (
                    view.t,
                    float(forecast.lower[index]),
                    float(forecast.point[index]),
                    float(forecast.upper[index]),
                )
            )
