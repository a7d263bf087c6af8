"""Values that cross the forecaster's border: the history a model sees and the forecast it returns."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_QUANTILES: tuple[float, float] = (0.1, 0.9)


class ForecastError(Exception):
    """A model could not produce a forecast (the message says why)."""


class InsufficientHistory(ForecastError):
    """The history is too short (or too sparse) for this model."""


@dataclass(frozen=True)
class History:
    """Evenly spaced observations: ``values[i]`` covers ``[start_ts + i*step_s, start_ts + (i+1)*step_s)``.

    ``NaN`` marks a missing interval. Units are the caller's (requests per interval or requests per second);
    forecasts come back in the same units.
    """

    start_ts: float
    step_s: float
    values: FloatArray

    def __post_init__(self) -> None:
        if not self.step_s > 0:
            raise ValueError(f"step_s must be positive, got {self.step_s}")
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError("values must be one-dimensional")
        object.__setattr__(self, "values", values)

    @classmethod
    def from_samples(
        cls, timestamps: npt.ArrayLike, values: npt.ArrayLike, step_s: float, end_ts: float | None = None
    ) -> History:
        """Place samples (epoch seconds) on a regular grid ending at ``end_ts``; empty slots become NaN.

        Several samples falling into one slot are averaged. ``end_ts`` defaults to just after the last sample.
        """
        ts = np.asarray(timestamps, dtype=np.float64)
        vals = np.asarray(values, dtype=np.float64)
        if ts.shape != vals.shape:
            raise ValueError("timestamps and values must have the same length")
        if ts.size == 0:
            if end_ts is None:
                raise InsufficientHistory("no samples")
            return cls(float(end_ts), step_s, np.empty(0))
        if end_ts is None:
            end_ts = float(ts.max()) + step_s
        start_ts = end_ts - step_s * math.ceil((end_ts - float(ts.min())) / step_s - 1e-9)
        n = round((end_ts - start_ts) / step_s)
        index = np.floor((ts - start_ts) / step_s + 1e-9).astype(np.int64)
        keep = (index >= 0) & (index < n) & np.isfinite(vals)
        sums = np.bincount(index[keep], weights=vals[keep], minlength=n)
        counts = np.bincount(index[keep], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return cls(float(start_ts), float(step_s), grid)

    @property
    def end_ts(self) -> float:
        """The forecast origin: the end of the last interval."""
        return self.start_ts + len(self.values) * self.step_s

    @property
    def timestamps(self) -> FloatArray:
        return self.start_ts + self.step_s * np.arange(len(self.values), dtype=np.float64)

    @property
    def span_s(self) -> float:
        return len(self.values) * self.step_s

    def observed_count(self) -> int:
        return int(np.count_nonzero(np.isfinite(self.values)))

    def tail(self, span_s: float) -> History:
        """The last ``span_s`` seconds (all of it if shorter)."""
        n = min(len(self.values), max(1, math.ceil(span_s / self.step_s - 1e-9)))
        return History(self.end_ts - n * self.step_s, self.step_s, self.values[len(self.values) - n :])

    def aggregate(self, factor: int, how: str = "sum") -> History:
        """Merge ``factor`` consecutive intervals, aligned so the last bucket ends at ``end_ts``.

        Missing intervals are filled with the bucket's mean of observed ones; a bucket with none is NaN.
        """
        if factor <= 1:
            return self
        n_buckets = len(self.values) // factor
        if n_buckets == 0:
            return History(self.end_ts, self.step_s * factor, np.empty(0))
        block = self.values[len(self.values) - n_buckets * factor :].reshape(n_buckets, factor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN bucket -> NaN, as intended
            means = np.nanmean(block, axis=1)
        out = means * factor if how == "sum" else means
        return History(self.end_ts - n_buckets * factor * self.step_s, self.step_s * factor, out)


@dataclass(frozen=True)
class Forecast:
    """Point forecast and band for each future interval, starting at the history's end.

    ``target_ts[k]`` is the start of the k-th forecast interval (epoch seconds). Values are never negative or NaN.
    ``model`` names the model that produced the numbers; ``requested_model`` the one asked for (they differ after
    a fallback).
    """

    target_ts: FloatArray
    point: FloatArray
    lower: FloatArray
    upper: FloatArray
    model: str
    step_s: float
    quantiles: tuple[float, float] = DEFAULT_QUANTILES
    requested_model: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def horizon_s(self) -> float:
        return len(self.point) * self.step_s

    def __len__(self) -> int:
        return len(self.point)


class Model(Protocol):
    """A forecasting model: fits on a history and predicts the next ``horizon_steps`` intervals, without I/O."""

    name: str

    def forecast(
        self, history: History, horizon_steps: int, quantiles: tuple[float, float] = DEFAULT_QUANTILES
    ) -> Forecast: ...
