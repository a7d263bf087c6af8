"""Models by name, and forecasting that never fails: a failing model hands over to simpler ones."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from forecaster.types import DEFAULT_QUANTILES, Forecast, ForecastError, History, Model

log = logging.getLogger(__name__)

MODEL_NAMES = ("naive", "ma", "snaive_day", "snaive_week", "holt_winters", "prophet", "profile")
# Candidates for scheduled selection: Prophet is left out by default because one fit takes seconds.
DEFAULT_CANDIDATES = ("naive", "ma", "snaive_day", "snaive_week", "holt_winters", "profile")
FALLBACK_CHAIN = ("profile", "ma", "naive")


class UnknownModel(ValueError):
    """No model has this name."""


def make_model(name: str) -> Model:
    """A model by name: one of MODEL_NAMES, or ``ma:SECONDS`` for a moving average over another window."""
    from forecaster import baselines, classical, profile

    if name.startswith("ma:"):
        try:
            return baselines.MovingAverage(float(name.split(":", 1)[1]))
        except ValueError as error:
            raise UnknownModel(f"bad moving-average window in {name!r}; use ma:SECONDS") from error
    factories: dict[str, type[Model]] = {
        "naive": baselines.Naive,
        "ma": baselines.MovingAverage,
        "snaive_day": baselines.SeasonalNaive,
        "holt_winters": classical.HoltWinters,
        "prophet": classical.ProphetModel,
        "profile": profile.ProfileModel,
    }
    if name == "snaive_week":
        return baselines.SeasonalNaive(baselines.WEEK_S)
    if name not in factories:
        raise UnknownModel(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)} or ma:SECONDS")
    return factories[name]()


def forecast_with_fallback(
    model: Model,
    history: History,
    horizon_steps: int,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
    chain: Sequence[str] = FALLBACK_CHAIN,
) -> Forecast:
    """``model``'s forecast, or the first model of ``chain`` that succeeds; only raises if even naive fails."""
    attempts: list[Model] = [model, *(make_model(name) for name in chain if name != model.name)]
    notes: list[str] = []
    for attempt in attempts:
        try:
            forecast = attempt.forecast(history, horizon_steps, quantiles)
        except Exception as error:  # a model bug must not stop forecasting; the next one takes over
            log.warning("model %s failed (%s: %s); falling back", attempt.name, type(error).__name__, error)
            notes.append(f"{attempt.name} failed: {error}")
            continue
        return dataclasses.replace(forecast, requested_model=model.name, notes=(*forecast.notes, *notes))
    raise ForecastError("; ".join(notes) or "no model could forecast")
