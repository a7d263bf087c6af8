"""Request-rate forecasts minutes ahead: one estimator interface, baselines, prewarm's own model, selection.

Light to import: statsmodels and Prophet are imported only by the models that use them, when they forecast.

    from forecaster import History, make_model
    forecast = make_model("profile").forecast(History(start_ts, 60.0, counts), horizon_steps=10)
"""

from forecaster.backtest import BacktestResult, ModelScore, backtest
from forecaster.registry import (
    DEFAULT_CANDIDATES,
    FALLBACK_CHAIN,
    MODEL_NAMES,
    UnknownModel,
    forecast_with_fallback,
    make_model,
)
from forecaster.selection import AutoForecaster, Selection, select_model
from forecaster.types import (
    DEFAULT_QUANTILES,
    Forecast,
    ForecastError,
    History,
    InsufficientHistory,
    Model,
)

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_QUANTILES",
    "FALLBACK_CHAIN",
    "MODEL_NAMES",
    "AutoForecaster",
    "BacktestResult",
    "Forecast",
    "ForecastError",
    "History",
    "InsufficientHistory",
    "Model",
    "ModelScore",
    "Selection",
    "UnknownModel",
    "backtest",
    "forecast_with_fallback",
    "make_model",
    "select_model",
]
