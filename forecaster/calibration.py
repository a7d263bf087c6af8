"""Calibrated bands: every model's band is corrected by its own recent forecast errors, the same way for all models.

Split-conformal with the model's own band as the unit (quantile scaling): for every past forecast whose target has
since been observed, the *score* of the upper half of the band is ``(actual - point) / (upper - point)`` and of the
lower half ``(point - actual) / (point - lower)``. A new forecast's upper half is multiplied by the conformal
``q_high`` quantile of the recent upper scores, its lower half by the ``1 - q_low`` quantile of the lower ones. A
band that was too narrow widens, one too wide narrows, each model keeping the shape of its own band (wider where it
knows it is less sure); the share of actual values above the upper edge is ``1 - q_high`` over the recent past,
whatever the model. The point is never changed.

Residuals come from rolling-origin backtests (``forecaster.backtest``) and from the forecasts a deployment's
pipeline made itself (``forecaster.pipeline``), and are kept for a window of recent time.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from forecaster.bands import reference_level
from forecaster.types import FloatArray, Forecast, History

# Fewer residuals than this and the band stays the model's own (the quantiles would be guesses).
MIN_RESIDUALS = 20


@dataclasses.dataclass(frozen=True)
class Residuals:
    """Scores of one model's past bands at the targets that have been observed since."""

    model: str
    target_ts: FloatArray
    upper: FloatArray  # (actual - point) / (upper - point)
    lower: FloatArray  # (point - actual) / (point - lower)

    @classmethod
    def empty(cls, model: str) -> Residuals:
        return cls(model, np.empty(0), np.empty(0), np.empty(0))

    def __len__(self) -> int:
        return len(self.target_ts)

    def merged(self, other: Residuals) -> Residuals:
        """These residuals and ``other``'s (same model), in target order."""
        ts = np.concatenate([self.target_ts, other.target_ts])
        order = np.argsort(ts, kind="stable")
        return Residuals(
            self.model,
            ts[order],
            np.concatenate([self.upper, other.upper])[order],
            np.concatenate([self.lower, other.lower])[order],
        )

    def between(self, start_ts: float, end_ts: float) -> Residuals:
        """The residuals whose target lies in ``[start_ts, end_ts)``."""
        keep = (self.target_ts >= start_ts) & (self.target_ts < end_ts)
        return Residuals(self.model, self.target_ts[keep], self.upper[keep], self.lower[keep])


def asked_model(forecast: Forecast) -> str:
    """The model a forecast was asked of: residuals belong to it, fallbacks inside it included."""
    return forecast.requested_model or forecast.model


def band_residuals(forecast: Forecast, actual: FloatArray, ref: float) -> Residuals:
    """Residuals of ``forecast``'s band edges against ``actual`` (same length; NaN = not observed, skipped).

    ``ref`` is the reference level of the history the forecast was made from (``bands.reference_level``).
    """
    actual = np.asarray(actual, dtype=np.float64)
    up, down = half_widths(forecast, ref)
    observed = np.isfinite(actual)
    return Residuals(
        asked_model(forecast),
        forecast.target_ts[observed],
        ((actual - forecast.point) / up)[observed],
        ((forecast.point - actual) / down)[observed],
    )


def half_widths(forecast: Forecast, ref: float) -> tuple[FloatArray, FloatArray]:
    """The model's own band, above and below its point: the unit its residuals are measured in (a band never
    narrower than a thousandth of the reference level, so a collapsed band still has a unit)."""
    floor = 1e-3 * max(ref, 1e-9)
    return (
        np.maximum(forecast.upper - forecast.point, floor),
        np.maximum(forecast.point - forecast.lower, floor),
    )


def residuals_since(forecast: Forecast, history: History, ref: float, since_ts: float) -> Residuals:
    """Residuals of ``forecast`` at the targets in ``[since_ts, history.end_ts)`` that ``history`` observed."""
    index = np.round((forecast.target_ts - history.start_ts) / history.step_s).astype(np.int64)
    inside = (
        (forecast.target_ts >= since_ts)
        & (index >= 0)
        & (index < len(history.values))
        & (forecast.target_ts + forecast.step_s <= history.end_ts + 1e-9)
    )
    actual = np.full(len(forecast), np.nan)
    actual[inside] = history.values[index[inside]]
    return band_residuals(forecast, actual, ref)


def conformal_quantile(values: FloatArray, q: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) q)``-th smallest of n values (an upper quantile), or the
    ``floor((n + 1) q)``-th for ``q < 0.5`` (a lower one), so that coverage is at least nominal for exchangeable
    errors; clipped to the sample's range."""
    n = len(values)
    ordered = np.sort(values)
    rank = math.ceil((n + 1) * q) if q >= 0.5 else math.floor((n + 1) * q)
    return float(ordered[min(max(rank, 1), n) - 1])


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What calibration did to one forecast: how many residuals it used and the factors on the two band halves."""

    residuals: int
    upper_scale: float
    lower_scale: float

    @property
    def applied(self) -> bool:
        return self.residuals >= MIN_RESIDUALS


def calibrate(
    forecast: Forecast, residuals: Residuals | None, ref: float
) -> tuple[Forecast, Calibration]:
    """``forecast`` with each half of its band scaled by the conformal quantile of ``residuals`` (its own model's).

    Fewer than ``MIN_RESIDUALS`` residuals, or residuals of another model (after a fallback), leave it unchanged.
    The point forecast is never changed.
    """
    if residuals is None or residuals.model != asked_model(forecast) or len(residuals) < MIN_RESIDUALS:
        return forecast, Calibration(0 if residuals is None else len(residuals), 1.0, 1.0)
    q_low, q_high = forecast.quantiles
    scale_up = conformal_quantile(residuals.upper, q_high)
    scale_down = conformal_quantile(residuals.lower, 1.0 - q_low)
    up, down = half_widths(forecast, ref)
    upper = np.maximum(forecast.point + scale_up * up, forecast.point)
    lower = np.minimum(np.maximum(forecast.point - scale_down * down, 0.0), forecast.point)
    calibrated = dataclasses.replace(forecast, upper=upper, lower=lower)
    return calibrated, Calibration(len(residuals), scale_up, scale_down)


def history_reference(history: History) -> float:
    """The reference level of a history (the mean of its observed values): the smallest band half is a thousandth
    of it."""
    return reference_level(history.values)
