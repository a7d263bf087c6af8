"""prewarm's own model: a recent level times a robust daily profile, self-tuned and calibrated on its past errors.

How it forecasts, in three steps:
1. **Daily profile**: the shape of a day, learned from the last ``profile_days`` days in ``bin_s`` bins as the
   per-bin *median* across days (each day first divided by its own level), so a one-off spike, an outage (zeros)
   or a change of level does not distort it. Needs ``min_profile_days`` of history; without it the profile is flat.
2. **Level**: an exponentially weighted mean of the deseasonalised recent values (value / profile). Its half-life
   is chosen from a geometric grid by the lowest error over the recent past (rolling origins, vectorised), so the
   model adapts to smooth traces (long memory) and bursty ones (short memory) by itself.
3. **Point and band**: ``level x profile(target)`` corrected by the median, and banded by the quantiles, of the
   model's own scaled errors over the recent past at each step ahead. The point forecast is therefore a
   predictive median (what minimises absolute error) and the band is calibrated empirically.
Long fine-grained histories are cheap: the profile uses O(n) bincounts and only the last days are read.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from forecaster.bands import calibration_origins, error_scale, finish, future_matrix, reference_level
from forecaster.baselines import DAY_S, with_fallback
from forecaster.types import DEFAULT_QUANTILES, FloatArray, Forecast, History, InsufficientHistory


class DailyProfile:
    """A robust time-of-day shape with mean 1, evaluated at any epoch second by circular interpolation."""

    def __init__(self, shape: FloatArray, bin_s: float) -> None:
        self.shape = shape
        self.bin_s = bin_s

    @classmethod
    def flat(cls) -> DailyProfile:
        return cls(np.ones(1), DAY_S)

    @classmethod
    def learn(cls, history: History, bin_s: float, min_days: float) -> DailyProfile:
        """Median shape over the days of ``history``; flat if fewer than ``min_days`` days are observed."""
        bins_per_day = max(1, round(DAY_S / bin_s))
        bin_s = DAY_S / bins_per_day
        ts = history.timestamps + history.step_s / 2
        values = history.values
        ok = np.isfinite(values)
        if ok.sum() * history.step_s < min_days * DAY_S:
            return cls.flat()
        day0 = math.floor(ts[0] / DAY_S)
        day = (np.floor(ts / DAY_S) - day0).astype(np.int64)
        tod_bin = np.minimum((np.mod(ts, DAY_S) // bin_s).astype(np.int64), bins_per_day - 1)
        cell = day * bins_per_day + tod_bin
        n_days = int(day[-1]) + 1
        size = n_days * bins_per_day
        sums = np.bincount(cell[ok], weights=values[ok], minlength=size)
        counts = np.bincount(cell[ok], minlength=size)
        # A cell counts only when at least half of it was observed.
        steps_per_bin = max(1.0, bin_s / history.step_s)
        with np.errstate(invalid="ignore", divide="ignore"):
            matrix = np.where(counts >= 0.5 * steps_per_bin, sums / np.maximum(counts, 1), np.nan)
        matrix = matrix.reshape(n_days, bins_per_day)
        if np.count_nonzero(np.isfinite(matrix).mean(axis=1) >= 0.5) < min_days:
            return cls.flat()
        shape = _nanmedian(matrix, axis=0)
        for _ in range(2):  # divide each day by its own level, then take the median shape again
            if not np.any(shape > 0):
                return cls.flat()
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios = np.where(shape[None, :] > 0, matrix / shape[None, :], np.nan)
            day_level = _nanmedian(ratios, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                normalised = np.where(day_level[:, None] > 0, matrix / day_level[:, None], np.nan)
            shape = _nanmedian(normalised, axis=0)
        shape = _fill_circular(shape)
        shape = (np.roll(shape, 1) + 2 * shape + np.roll(shape, -1)) / 4  # light circular smoothing
        mean = shape.mean()
        if not np.isfinite(mean) or mean <= 0:
            return cls.flat()
        shape = np.maximum(shape / mean, 0.05)  # a near-silent hour must not blow up value / profile
        return cls(shape / shape.mean(), bin_s)

    def __call__(self, ts: FloatArray) -> FloatArray:
        if len(self.shape) == 1:
            return np.ones_like(ts, dtype=np.float64)
        position = np.mod(ts, DAY_S) / self.bin_s - 0.5  # bin centres at integer positions
        n = len(self.shape)
        low = np.floor(position).astype(np.int64)
        frac = position - low
        return (1 - frac) * self.shape[low % n] + frac * self.shape[(low + 1) % n]


def _nanmedian(matrix: FloatArray, axis: int) -> FloatArray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.asarray(np.nanmedian(matrix, axis=axis), dtype=np.float64)


def _fill_circular(shape: FloatArray) -> FloatArray:
    ok = np.isfinite(shape)
    if ok.all() or not ok.any():
        return np.nan_to_num(shape, nan=1.0)
    x = np.arange(len(shape))
    n = len(shape)
    xp = np.concatenate([x[ok] - n, x[ok], x[ok] + n])
    fp = np.tile(shape[ok], 3)
    return np.interp(x, xp, fp)


class ProfileModel:
    """Recent level x robust daily profile, with a self-tuned memory and empirically calibrated median and band."""

    name = "profile"

    def __init__(
        self,
        profile_days: float = 14.0,
        min_profile_days: float = 2.0,
        bin_s: float = 900.0,
        calibration_span_s: float = 3 * DAY_S,
        max_halflife_s: float = 4 * 3600.0,
        max_calibration_steps: int = 50_000,
    ) -> None:
        self.profile_days = profile_days
        self.min_profile_days = min_profile_days
        self.bin_s = bin_s
        self.calibration_span_s = calibration_span_s
        self.max_halflife_s = max_halflife_s
        self.max_calibration_steps = max_calibration_steps

    def halflives_steps(self, step_s: float) -> list[float]:
        """Candidate half-lives of the level, in steps: 1, 2, 4, ... up to ``max_halflife_s``."""
        count = max(1, math.floor(math.log2(max(1.0, self.max_halflife_s / step_s))) + 1)
        return [2.0**k for k in range(count)]

    def forecast(
        self, history: History, horizon_steps: int, quantiles: tuple[float, float] = DEFAULT_QUANTILES
    ) -> Forecast:
        if history.observed_count() == 0:
            from forecaster.baselines import Naive

            return with_fallback(Naive(), history, horizon_steps, quantiles, self.name, "no observed history")
        step_s = history.step_s
        profile = DailyProfile.learn(
            history.tail(self.profile_days * DAY_S), self.bin_s, self.min_profile_days
        )
        span_steps = min(math.ceil(self.calibration_span_s / step_s), self.max_calibration_steps)
        warmup = math.ceil(3 * max(self.halflives_steps(step_s)))
        recent = history.tail((span_steps + horizon_steps + warmup) * step_s)
        values = recent.values
        n = len(values)
        seasonal_past = profile(recent.timestamps + step_s / 2)
        future_ts = recent.end_ts + step_s * (np.arange(horizon_steps, dtype=np.float64) + 0.5)
        seasonal_future = profile(future_ts)
        deseasonalised = pd.Series(values / seasonal_past)
        ref = reference_level(values)

        origins = calibration_origins(n, horizon_steps, span_steps)
        origins = origins[origins >= 2]  # the level needs a couple of values to mean anything
        empty = np.empty((0, horizon_steps))
        actual = future_matrix(values, origins, horizon_steps) if origins.size else empty
        seasonal_at = future_matrix(seasonal_past, origins, horizon_steps) if origins.size else empty

        # Level: the half-life with the lowest recent error.
        best: tuple[float, FloatArray, FloatArray] | None = None
        for halflife in self.halflives_steps(step_s):
            level = deseasonalised.ewm(halflife=halflife, ignore_na=True).mean().to_numpy()
            if origins.size == 0:
                best = (0.0, level, empty)
                break
            predicted = level[origins - 1][:, None] * seasonal_at
            error = _mean_abs(actual - predicted)
            if best is None or error < best[0]:
                best = (error, level, predicted)
        if best is None:
            raise InsufficientHistory(f"{self.name}: empty history")
        _, level, predicted = best
        current_level = float(level[-1]) if np.isfinite(level[-1]) else float(np.nanmean(values))
        mean_forecast = current_level * seasonal_future

        levels = (0.5, quantiles[0], quantiles[1])
        q = _scaled_quantiles(actual, predicted, ref, levels, horizon_steps)
        scale = error_scale(mean_forecast, ref)
        point = mean_forecast + q[0] * scale
        lower = mean_forecast + q[1] * scale
        upper = mean_forecast + q[2] * scale
        forecast = finish(history, point, lower, upper, self.name, quantiles)
        if len(profile.shape) == 1:  # the history is too short for a daily shape: a level model for now
            note = f"{self.name}: no daily shape yet (needs {self.min_profile_days:g} days of history)"
            forecast = dataclasses.replace(forecast, notes=(*forecast.notes, note))
        return forecast


def _scaled_quantiles(
    actual: FloatArray, predicted: FloatArray, ref: float, levels: tuple[float, ...], horizon_steps: int
) -> FloatArray:
    from statistics import NormalDist

    from forecaster.bands import scaled_residual_quantiles

    q = scaled_residual_quantiles(actual, predicted, ref, levels) if actual.size else None
    if q is None:  # no error history yet: a symmetric normal band around the mean
        z = np.array([0.0 if p == 0.5 else NormalDist().inv_cdf(p) for p in levels])
        return np.repeat(z[:, None], horizon_steps, axis=1)
    return q


def _mean_abs(errors: FloatArray) -> float:
    finite = np.isfinite(errors)
    return float(np.abs(errors[finite]).mean()) if finite.any() else 0.0
