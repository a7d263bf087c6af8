"""Simple baselines: last value, moving average, seasonal naive; all vectorised over forecast origins."""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod

import numpy as np

from forecaster.bands import (
    calibration_origins,
    finish,
    future_matrix,
    poisson_like_band,
    reference_level,
    scaled_residual_quantiles,
)
from forecaster.types import DEFAULT_QUANTILES, FloatArray, Forecast, History, InsufficientHistory, Model

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S


def forward_filled(values: FloatArray) -> FloatArray:
    """Each NaN replaced by the last observed value before it (leading NaNs stay NaN)."""
    finite = np.isfinite(values)
    index = np.where(finite, np.arange(len(values)), -1)
    np.maximum.accumulate(index, out=index)
    out = np.where(index >= 0, values[np.maximum(index, 0)], np.nan)
    return out


def with_fallback(
    fallback: Model, history: History, horizon_steps: int, quantiles: tuple[float, float], name: str, why: str
) -> Forecast:
    """Forecast with ``fallback`` and record that ``name`` was asked for and why it was replaced."""
    forecast = fallback.forecast(history, horizon_steps, quantiles)
    return dataclasses.replace(forecast, requested_model=name, notes=(*forecast.notes, f"{name}: {why}"))


class VectorisedModel(ABC):
    """A model whose forecast from any past origin is cheap, so its band is calibrated on its own past errors."""

    name: str = "model"
    calibration_span_s: float = 3 * DAY_S

    @abstractmethod
    def points(
        self, values: FloatArray, origins: np.ndarray, horizon_steps: int, step_s: float
    ) -> FloatArray:
        """Point forecasts (origins x steps) using only ``values[:origin]`` for each origin."""

    def min_history_steps(self, step_s: float) -> int:
        return 1

    def fallback(self) -> Model | None:
        return None

    def forecast(
        self, history: History, horizon_steps: int, quantiles: tuple[float, float] = DEFAULT_QUANTILES
    ) -> Forecast:
        values = history.values
        n = len(values)
        if n < self.min_history_steps(history.step_s) or history.observed_count() == 0:
            fallback = self.fallback()
            if fallback is None:
                raise InsufficientHistory(f"{self.name}: no observed history")
            return with_fallback(fallback, history, horizon_steps, quantiles, self.name, "history too short")
        point = self.points(values, np.array([n]), horizon_steps, history.step_s)[0]
        ref = reference_level(values)
        span = math.ceil(self.calibration_span_s / history.step_s)
        origins = calibration_origins(n, horizon_steps, span)
        origins = origins[origins >= self.min_history_steps(history.step_s)]
        q = None
        if origins.size:
            predicted = self.points(values, origins, horizon_steps, history.step_s)
            q = scaled_residual_quantiles(
                future_matrix(values, origins, horizon_steps), predicted, ref, quantiles
            )
        if q is None:
            lower, upper = poisson_like_band(point, ref, quantiles)
        else:
            from forecaster.bands import error_scale

            scale = error_scale(point, ref)
            lower, upper = point + q[0] * scale, point + q[1] * scale
        return finish(history, point, lower, upper, self.name, quantiles)


class Naive(VectorisedModel):
    """Tomorrow is today: the last observed value, held flat."""

    name = "naive"

    def points(
        self, values: FloatArray, origins: np.ndarray, horizon_steps: int, step_s: float
    ) -> FloatArray:
        last = forward_filled(values)[origins - 1]
        return np.repeat(np.nan_to_num(last)[:, None], horizon_steps, axis=1)


class MovingAverage(VectorisedModel):
    """Mean of the observed values in the last ``window_s`` seconds, held flat."""

    def __init__(self, window_s: float = 600.0) -> None:
        self.window_s = window_s
        self.name = "ma" if window_s == 600.0 else f"ma:{window_s:g}"

    def points(
        self, values: FloatArray, origins: np.ndarray, horizon_steps: int, step_s: float
    ) -> FloatArray:
        window = max(1, round(self.window_s / step_s))
        finite = np.isfinite(values)
        sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
        counts = np.concatenate([[0], np.cumsum(finite)])
        start = np.maximum(origins - window, 0)
        total = sums[origins] - sums[start]
        count = counts[origins] - counts[start]
        last = np.nan_to_num(forward_filled(values)[origins - 1])
        mean = np.where(count > 0, total / np.maximum(count, 1), last)
        return np.repeat(mean[:, None], horizon_steps, axis=1)


class SeasonalNaive(VectorisedModel):
    """The value one season (a day or a week) earlier; gaps there are filled with the last value before them."""

    def __init__(self, season_s: float = DAY_S, name: str | None = None) -> None:
        self.season_s = season_s
        self.name = name or (
            "snaive_week"
            if season_s == WEEK_S
            else "snaive_day"
            if season_s == DAY_S
            else f"snaive:{season_s:g}"
        )
        self.calibration_span_s = 2 * DAY_S

    def min_history_steps(self, step_s: float) -> int:
        return round(self.season_s / step_s)

    def fallback(self) -> Model | None:
        return SeasonalNaive(DAY_S) if self.season_s > DAY_S else Naive()

    def points(
        self, values: FloatArray, origins: np.ndarray, horizon_steps: int, step_s: float
    ) -> FloatArray:
        lag = round(self.season_s / step_s)
        filled = forward_filled(values)
        steps = np.arange(horizon_steps)
        index = origins[:, None] + (steps % lag)[None, :] - lag
        return np.nan_to_num(filled[index])
