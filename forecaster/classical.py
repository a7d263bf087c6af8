"""Reference models users would otherwise reach for: Holt-Winters (statsmodels) and Prophet, fairly configured.

Both import their libraries inside ``forecast`` so that ``import forecaster`` stays light.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pandas as pd

from forecaster.bands import error_scale, finish, poisson_like_band, reference_level
from forecaster.baselines import DAY_S, MovingAverage, with_fallback
from forecaster.types import DEFAULT_QUANTILES, FloatArray, Forecast, ForecastError, History

log = logging.getLogger(__name__)


def _interpolated(values: FloatArray) -> FloatArray:
    """Gaps filled linearly (ends by the nearest observation), as both libraries need complete series."""
    filled = np.asarray(pd.Series(values).interpolate(limit_direction="both"), dtype=np.float64)
    return filled


class HoltWinters:
    """Additive Holt-Winters with a damped trend and a daily season on ``agg_s`` totals of the last days.

    statsmodels supports one seasonal period; daily is the one that matters minutes ahead (a weekly period on
    15-minute totals has 672 states and needs four weeks of history). Per-step forecasts are the bucket forecast
    spread evenly; the band comes from in-sample one-step errors at the native step.
    """

    name = "holt_winters"

    def __init__(self, agg_s: float = 900.0, history_days: float = 14.0, season_s: float = DAY_S) -> None:
        self.agg_s = agg_s
        self.history_days = history_days
        self.season_s = season_s

    def forecast(
        self, history: History, horizon_steps: int, quantiles: tuple[float, float] = DEFAULT_QUANTILES
    ) -> Forecast:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        factor = max(1, round(self.agg_s / history.step_s))
        recent = history.tail(self.history_days * DAY_S)
        coarse = recent.aggregate(factor, "sum")
        period = max(2, round(self.season_s / coarse.step_s))
        observed = np.isfinite(coarse.values)
        if len(coarse.values) < 2 * period + 2 or observed.mean() < 0.5:
            return with_fallback(
                MovingAverage(), history, horizon_steps, quantiles, self.name, "needs two seasons"
            )
        y = _interpolated(coarse.values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ExponentialSmoothing(
                y,
                trend="add",
                damped_trend=True,
                seasonal="add",
                seasonal_periods=period,
                initialization_method="estimated",
            ).fit()
        coarse_steps = math.ceil(horizon_steps / factor)
        point = np.repeat(np.asarray(fit.forecast(coarse_steps)) / factor, factor)[:horizon_steps]
        if not np.all(np.isfinite(point)):
            raise ForecastError(f"{self.name}: the fit diverged")
        ref = reference_level(recent.values)
        # In-sample one-step errors at the native step, last three days: fitted bucket total / factor vs actual.
        fitted_fine = np.repeat(np.asarray(fit.fittedvalues) / factor, factor)
        actual_fine = recent.values[len(recent.values) - len(fitted_fine) :]
        tail = min(len(fitted_fine), round(3 * DAY_S / history.step_s))
        residual = (actual_fine[-tail:] - fitted_fine[-tail:]) / error_scale(fitted_fine[-tail:], ref)
        residual = residual[np.isfinite(residual)]
        if residual.size >= 20:
            q_low, q_high = np.quantile(residual, quantiles)
            scale = error_scale(point, ref)
            lower, upper = point + q_low * scale, point + q_high * scale
        else:
            lower, upper = poisson_like_band(point, ref, quantiles)
        return finish(history, point, lower, upper, self.name, quantiles)


class ProphetModel:
    """Prophet with daily and weekly seasonality on per-minute values of the last ``history_days`` days."""

    name = "prophet"

    def __init__(
        self, history_days: float = 14.0, agg_s: float = 60.0, min_history_days: float = 2.0
    ) -> None:
        self.history_days = history_days
        self.agg_s = agg_s
        self.min_history_days = min_history_days

    def forecast(
        self, history: History, horizon_steps: int, quantiles: tuple[float, float] = DEFAULT_QUANTILES
    ) -> Forecast:
        for noisy in ("cmdstanpy", "prophet"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        from prophet import Prophet

        factor = max(1, round(self.agg_s / history.step_s))
        coarse = history.tail(self.history_days * DAY_S).aggregate(factor, "sum")
        observed = np.isfinite(coarse.values)
        if observed.sum() * coarse.step_s < self.min_history_days * DAY_S:
            return with_fallback(
                MovingAverage(), history, horizon_steps, quantiles, self.name, "needs two days"
            )
        frame = pd.DataFrame(
            {"ds": pd.to_datetime(coarse.timestamps[observed], unit="s"), "y": coarse.values[observed]}
        )
        model = Prophet(
            daily_seasonality=True,
            weekly_seasonality=True,
            yearly_seasonality=False,
            interval_width=quantiles[1] - quantiles[0],
        )
        np.random.seed(0)  # Prophet samples its intervals; the backtest must be deterministic
        model.fit(frame)
        coarse_steps = math.ceil(horizon_steps / factor)
        future_ts = coarse.end_ts + coarse.step_s * np.arange(coarse_steps)
        predicted = model.predict(pd.DataFrame({"ds": pd.to_datetime(future_ts, unit="s")}))

        def spread(column: str) -> FloatArray:
            return np.repeat(predicted[column].to_numpy(dtype=np.float64) / factor, factor)[:horizon_steps]

        return finish(
            history, spread("yhat"), spread("yhat_lower"), spread("yhat_upper"), self.name, quantiles
        )
