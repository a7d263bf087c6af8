"""Rolling-origin backtest: at each origin every model sees only the history before it and forecasts ahead."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from forecaster.calibration import Residuals, band_residuals, calibrate, history_reference
from forecaster.types import DEFAULT_QUANTILES, FloatArray, ForecastError, History, Model

log = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]

# Bands are calibrated on the residuals of the last day (forecaster.calibration).
DEFAULT_CALIBRATION_S = 86_400.0


@dataclass(frozen=True)
class ModelScore:
    """One model's errors over all origins and steps of a backtest, with its band calibrated
    (``forecaster.calibration``) on the residuals of its own earlier forecasts."""

    name: str
    mae: float
    smape: float  # percent, 0..200
    pinball_upper: float  # pinball loss of the calibrated upper band at its quantile: what decide() provisions for
    coverage: float  # share of actual values inside the calibrated [lower, upper]
    fit_s: float  # mean seconds per fit+predict
    origins: int
    failures: int  # origins where the model raised (scored with the naive fallback's numbers)
    fallbacks: int  # origins where the model handed over to a simpler one, or ran without what it needs (notes)
    coverage_own: float = math.nan  # share inside the model's own (uncalibrated) band
    pinball_upper_own: float = math.nan  # the same loss for the model's own upper band
    above_upper: float = math.nan  # share of actual values above the calibrated upper band (nominal 1 - q_high)
    below_lower: float = math.nan  # share below the calibrated lower band (nominal q_low)


@dataclass(frozen=True)
class BacktestResult:
    scores: dict[str, ModelScore]
    selected: str
    horizon_steps: int
    step_s: float
    origins: int
    calibration_origins: int = 0  # earlier origins whose residuals only calibrate (not scored)
    quantiles: tuple[float, float] = DEFAULT_QUANTILES
    residuals: dict[str, Residuals] = field(default_factory=dict)  # per model, of every origin (to seed a pipeline)

    def to_json_dict(self) -> dict[str, object]:
        return {
            "models": {
                name: {
                    "mae": s.mae,
                    "smape": s.smape,
                    "pinball_upper": s.pinball_upper,
                    "coverage": s.coverage,
                    "above_upper": s.above_upper,
                    "below_lower": s.below_lower,
                    "coverage_own_band": s.coverage_own,
                    "pinball_upper_own_band": s.pinball_upper_own,
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


def warmup_indices(first_origin: int, step_s: float, every_s: float, calibration_s: float) -> np.ndarray:
    """Origins every ``every_s`` in the ``calibration_s`` before ``first_origin`` (whose forecasts only calibrate)."""
    every = max(1, round(every_s / step_s))
    count = math.floor(calibration_s / step_s / every + 1e-9)
    origins = first_origin - every * np.arange(count, 0, -1, dtype=np.int64)
    return origins[origins >= 1]


def pinball(actual: FloatArray, quantile_forecast: FloatArray, q: float) -> FloatArray:
    diff = actual - quantile_forecast
    return np.maximum(q * diff, (q - 1) * diff)


def smape_terms(actual: FloatArray, point: FloatArray) -> FloatArray:
    denominator = np.abs(actual) + np.abs(point)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * np.abs(actual - point) / denominator, 0.0)


def select_best(scores: dict[str, ModelScore]) -> str:
    """The lowest pinball loss of the calibrated upper band wins (what decide() provisions for); a model that failed
    at some origin ranks after those that never did."""
    return min(scores.values(), key=lambda s: (s.failures > 0, s.pinball_upper, s.mae, s.fit_s)).name


@dataclass
class _Scored:
    """One model's forecasts at the origins so far, for scoring and for the residual memory."""

    residuals: list[Residuals] = field(default_factory=list)
    errors: list[FloatArray] = field(default_factory=list)
    smapes: list[FloatArray] = field(default_factory=list)
    pinballs: list[FloatArray] = field(default_factory=list)
    pinballs_own: list[FloatArray] = field(default_factory=list)
    inside: list[BoolArray] = field(default_factory=list)
    inside_own: list[BoolArray] = field(default_factory=list)
    above: list[BoolArray] = field(default_factory=list)
    below: list[BoolArray] = field(default_factory=list)


def backtest(
    history: History,
    models: Sequence[Model],
    horizon_s: float,
    every_s: float,
    eval_s: float,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
    calibration_s: float = DEFAULT_CALIBRATION_S,
) -> BacktestResult:
    """Score each model at every origin on the steps after it; the model only ever sees ``values[:origin]``.

    Every model's band is calibrated the same way (``forecaster.calibration``): at each origin, by the residuals of
    its own forecasts from the origins of the ``calibration_s`` before it whose targets were observed before it.
    The first scored origins draw on origins in the ``calibration_s`` before the evaluation window, which are
    forecast (with the same spacing) but not scored.
    """
    from forecaster.baselines import Naive

    step_s = history.step_s
    horizon_steps = max(1, math.ceil(horizon_s / step_s - 1e-9))
    values = history.values
    origins = origin_indices(len(values), step_s, horizon_steps, every_s, eval_s)
    observed_at = np.flatnonzero(np.isfinite(values))
    if observed_at.size:  # an origin before the first observation has nothing to forecast from
        origins = origins[origins > observed_at[0]]
    if origins.size == 0:
        raise ForecastError(
            "no origin leaves a full horizon inside the evaluation window; shorten the horizon"
        )
    warmup = warmup_indices(int(origins[0]), step_s, every_s, calibration_s)
    if observed_at.size:
        warmup = warmup[warmup > observed_at[0]]
    all_origins = np.concatenate([warmup, origins])
    scored_from = len(warmup)
    scores: dict[str, ModelScore] = {}
    residuals_by_model: dict[str, Residuals] = {}
    for model in models:
        done = _Scored()
        total_s, failures, fallbacks = 0.0, 0, 0
        for k, origin in enumerate(all_origins):
            past = History(history.start_ts, step_s, values[:origin])
            actual = values[origin : origin + horizon_steps]
            started = time.perf_counter()
            try:
                raw = model.forecast(past, horizon_steps, quantiles)
            except Exception as error:  # a model bug is scored with the naive numbers: it does not void the model
                log.warning("backtest: %s failed at origin %d: %s", model.name, origin, error)
                failures += k >= scored_from
                raw = Naive().forecast(past, horizon_steps, quantiles)
            raw = dataclasses.replace(raw, requested_model=model.name)
            ref = history_reference(past)
            memory = _memory(done.residuals, model.name).between(past.end_ts - calibration_s, past.end_ts)
            forecast, _ = calibrate(raw, memory, ref)
            total_s += time.perf_counter() - started
            done.residuals.append(band_residuals(raw, actual, ref))
            if k < scored_from:
                continue
            if raw.model != model.name or raw.notes:
                fallbacks += 1
            seen = np.isfinite(actual)
            a = actual[seen]
            done.errors.append(np.abs(a - forecast.point[seen]))
            done.smapes.append(smape_terms(a, forecast.point[seen]))
            done.pinballs.append(pinball(a, forecast.upper[seen], quantiles[1]))
            done.pinballs_own.append(pinball(a, raw.upper[seen], quantiles[1]))
            done.inside.append((a >= forecast.lower[seen]) & (a <= forecast.upper[seen]))
            done.above.append(a > forecast.upper[seen])
            done.below.append(a < forecast.lower[seen])
            done.inside_own.append((a >= raw.lower[seen]) & (a <= raw.upper[seen]))
        scores[model.name] = ModelScore(
            name=model.name,
            mae=_mean(done.errors),
            smape=100 * _mean(done.smapes),
            pinball_upper=_mean(done.pinballs),
            coverage=_mean(done.inside),
            fit_s=total_s / len(all_origins),
            origins=len(origins),
            failures=failures,
            fallbacks=fallbacks,
            coverage_own=_mean(done.inside_own),
            pinball_upper_own=_mean(done.pinballs_own),
            above_upper=_mean(done.above),
            below_lower=_mean(done.below),
        )
        residuals_by_model[model.name] = _memory(done.residuals, model.name)
        log.info(
            "backtest: %s pinball=%.3f coverage=%.3f mae=%.3f fit_s=%.4f", model.name,
            scores[model.name].pinball_upper, scores[model.name].coverage, scores[model.name].mae,
            scores[model.name].fit_s,
        )  # fmt: skip
    return BacktestResult(
        scores, select_best(scores), horizon_steps, step_s, len(origins), scored_from, quantiles,
        residuals_by_model,
    )  # fmt: skip


def _memory(parts: list[Residuals], model: str) -> Residuals:
    """The residuals of every forecast so far as one set."""
    if not parts:
        return Residuals.empty(model)
    return Residuals(
        model,
        np.concatenate([p.target_ts for p in parts]),
        np.concatenate([p.upper for p in parts]),
        np.concatenate([p.lower for p in parts]),
    )


def _mean(parts: Sequence[FloatArray | BoolArray]) -> float:
    joined = np.concatenate(parts) if parts else np.empty(0)
    return float(joined.mean()) if joined.size else math.nan
