"""Rolling-origin backtest: at each origin every model sees only the history before it and forecasts ahead."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forecaster.types import DEFAULT_QUANTILES, FloatArray, ForecastError, History, Model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelScore:
    """One model's errors over all origins and steps of a backtest."""

    name: str
    mae: float
    smape: float  # percent, 0..200
    pinball_upper: float
    coverage: float  # share of actual values inside [lower, upper]
    fit_s: float  # mean seconds per fit+predict
    origins: int
    failures: int  # origins where the model raised (scored with the naive fallback's numbers)
    fallbacks: int  # origins where the model handed over to a simpler one


@dataclass(frozen=True)
class BacktestResult:
    scores: dict[str, ModelScore]
    selected: str
    horizon_steps: int
    step_s: float
    origins: int

    def to_json_dict(self) -> dict[str, object]:
        return {
            "models": {
                name: {
                    "mae": s.mae,
                    "smape": s.smape,
                    "pinball_upper": s.pinball_upper,
                    "coverage": s.coverage,
                    "fit_s": s.fit_s,
                }
                for name, s in self.scores.items()
            },
            "selected": self.selected,
        }


def origin_indices(n: int, step_s: float, horizon_steps: int, every_s: float, eval_s: float) -> np.ndarray:
    """Origins every ``every_s`` within the last ``eval_s`` of a history of ``n`` steps, each with a full horizon."""
    every = max(1, round(every_s / step_s))
    first = max(1, n - math.ceil(eval_s / step_s - 1e-9))
    return np.arange(first, n - horizon_steps + 1, every, dtype=np.int64)


def pinball(actual: FloatArray, quantile_forecast: FloatArray, q: float) -> FloatArray:
    diff = actual - quantile_forecast
    return np.maximum(q * diff, (q - 1) * diff)


def smape_terms(actual: FloatArray, point: FloatArray) -> FloatArray:
    denominator = np.abs(actual) + np.abs(point)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * np.abs(actual - point) / denominator, 0.0)


def select_best(scores: dict[str, ModelScore]) -> str:
    """Lowest MAE wins; a model that failed at some origin ranks after those that never did."""
    return min(scores.values(), key=lambda s: (s.failures > 0, s.mae, s.fit_s)).name


def backtest(
    history: History,
    models: Sequence[Model],
    horizon_s: float,
    every_s: float,
    eval_s: float,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
) -> BacktestResult:
    """Score each model at every origin on the steps after it; the model only ever sees ``values[:origin]``."""
    from forecaster.baselines import Naive

    step_s = history.step_s
    horizon_steps = max(1, math.ceil(horizon_s / step_s - 1e-9))
    values = history.values
    origins = origin_indices(len(values), step_s, horizon_steps, every_s, eval_s)
    observed = np.flatnonzero(np.isfinite(values))
    if observed.size:  # an origin before the first observation has nothing to forecast from
        origins = origins[origins > observed[0]]
    if origins.size == 0:
        raise ForecastError(
            "no origin leaves a full horizon inside the evaluation window; shorten the horizon"
        )
    scores: dict[str, ModelScore] = {}
    for model in models:
        errors, smapes, pinballs, inside = [], [], [], []
        total_s, failures, fallbacks = 0.0, 0, 0
        for origin in origins:
            past = History(history.start_ts, step_s, values[:origin])
            actual = values[origin : origin + horizon_steps]
            started = time.perf_counter()
            try:
                forecast = model.forecast(past, horizon_steps, quantiles)
            except (
                ForecastError
            ) as error:  # scored with the naive numbers so one failure does not void a model
                log.warning("backtest: %s failed at origin %d: %s", model.name, origin, error)
                failures += 1
                forecast = Naive().forecast(past, horizon_steps, quantiles)
            total_s += time.perf_counter() - started
            if forecast.model != model.name:
                fallbacks += 1
            observed = np.isfinite(actual)
            a = actual[observed]
            errors.append(np.abs(a - forecast.point[observed]))
            smapes.append(smape_terms(a, forecast.point[observed]))
            pinballs.append(pinball(a, forecast.upper[observed], quantiles[1]))
            inside.append((a >= forecast.lower[observed]) & (a <= forecast.upper[observed]))
        scores[model.name] = ModelScore(
            name=model.name,
            mae=float(np.concatenate(errors).mean()),
            smape=float(100 * np.concatenate(smapes).mean()),
            pinball_upper=float(np.concatenate(pinballs).mean()),
            coverage=float(np.concatenate(inside).mean()),
            fit_s=total_s / len(origins),
            origins=len(origins),
            failures=failures,
            fallbacks=fallbacks,
        )
        log.info(
            "backtest: %s mae=%.3f fit_s=%.4f", model.name, scores[model.name].mae, scores[model.name].fit_s
        )
    return BacktestResult(scores, select_best(scores), horizon_steps, step_s, len(origins))
