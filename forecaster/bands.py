"""Prediction bands from a model's own past errors, scaled to the forecast level, and forecast clean-up."""

from __future__ import annotations

import numpy as np

from forecaster.types import FloatArray, Forecast, ForecastError, History

# At most this many (origin, step) pairs are evaluated when calibrating a band on past data.
MAX_CALIBRATION_CELLS = 200_000


def reference_level(values: FloatArray) -> float:
    """A typical magnitude of the series (mean of observed values, at least a tiny positive number)."""
    finite = values[np.isfinite(values)]
    level = float(finite.mean()) if finite.size else 0.0
    return max(level, 1e-6)


def error_scale(point: FloatArray, ref: float) -> FloatArray:
    """Expected size of errors at forecast level ``point``: Poisson-like at low levels, proportional at high."""
    p = np.maximum(point, 0.0)
    return np.sqrt(p * (p + ref)) + 0.05 * ref


def calibration_origins(n: int, horizon_steps: int, span_steps: int) -> np.ndarray:
    """Past origins (indices into the history) whose whole horizon lies inside it, thinned to a budget."""
    last = n - horizon_steps
    first = max(1, last - span_steps)
    if last < first:
        return np.empty(0, dtype=np.int64)
    stride = max(1, ((last - first + 1) * horizon_steps) // MAX_CALIBRATION_CELLS + 1)
    return np.arange(last, first - 1, -stride, dtype=np.int64)[::-1]


def future_matrix(values: FloatArray, origins: np.ndarray, horizon_steps: int) -> FloatArray:
    """``values[o + h]`` for each origin ``o`` (rows) and step ``h`` (columns)."""
    return values[origins[:, None] + np.arange(horizon_steps)[None, :]]


def scaled_residual_quantiles(
    actual: FloatArray, predicted: FloatArray, ref: float, levels: tuple[float, ...]
) -> FloatArray | None:
    """Per-step quantiles of ``(actual - predicted) / error_scale(predicted)``; None without enough data."""
    residual = (actual - predicted) / error_scale(predicted, ref)
    ok = np.isfinite(residual)
    if ok.sum() < 20:
        return None
    pooled = np.quantile(residual[ok], levels)
    out = np.empty((len(levels), residual.shape[1]))
    for h in range(residual.shape[1]):
        column = residual[:, h][ok[:, h]]
        # Shrink per-step quantiles to the pooled ones when a step has few errors.
        weight = min(1.0, column.size / 200.0)
        per_step = np.quantile(column, levels) if column.size else pooled
        out[:, h] = weight * per_step + (1 - weight) * pooled
    return out


def poisson_like_band(
    point: FloatArray, ref: float, quantiles: tuple[float, float]
) -> tuple[FloatArray, FloatArray]:
    """A fallback band when there is no error history: +-z times the error scale."""
    from statistics import NormalDist

    z_low, z_high = (NormalDist().inv_cdf(q) for q in quantiles)
    scale = error_scale(point, ref)
    return point + z_low * scale, point + z_high * scale


def finish(
    history: History,
    point: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    model: str,
    quantiles: tuple[float, float],
) -> Forecast:
    """Build a Forecast: no NaN, nothing negative, lower <= point <= upper."""
    point = np.asarray(point, dtype=np.float64)
    if point.size and not np.all(np.isfinite(point)):
        raise ForecastError(f"{model}: non-finite point forecast")
    point = np.maximum(point, 0.0)
    lower = np.minimum(np.maximum(np.nan_to_num(np.asarray(lower, dtype=np.float64), nan=0.0), 0.0), point)
    upper = np.maximum(np.nan_to_num(np.asarray(upper, dtype=np.float64), nan=0.0), point)
    target_ts = history.end_ts + history.step_s * np.arange(len(point), dtype=np.float64)
    return Forecast(
        target_ts=target_ts,
        point=point,
        lower=lower,
        upper=upper,
        model=model,
        step_s=history.step_s,
        quantiles=quantiles,
        requested_model=model,
    )
