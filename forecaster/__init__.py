"""Request-rate forecasts minutes ahead: one estimator interface, baselines, prewarm's own model, selection, calibrated
bands, and the one pipeline (``run_pipeline``) the scheduled job and the simulator share.

Light to import: statsmodels and Prophet are imported only by the models that use them, when they forecast.

    from forecaster import History, make_model
    forecast = make_model("profile").forecast(History(start_ts, 60.0, counts), horizon_steps=10)
"""

from forecaster.backtest import BacktestResult, ModelScore, backtest
from forecaster.calibration import Calibration, Residuals, calibrate
from forecaster.pipeline import ForecastPlan, PipelineForecast, PipelineState, run_pipeline
from forecaster.registry import (
    DEFAULT_CANDIDATES,
    FALLBACK_CHAIN,
    MODEL_NAMES,
    UnknownModel,
    forecast_with_fallback,
    make_model,
)
from forecaster.selection import Selection, select_model
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
    "BacktestResult",
    "Calibration",
    "Forecast",
    "ForecastError",
    "ForecastPlan",
    "History",
    "InsufficientHistory",
    "Model",
    "ModelScore",
    "PipelineForecast",
    "PipelineState",
    "Residuals",
    "Selection",
    "UnknownModel",
    "backtest",
    "calibrate",
    "forecast_with_fallback",
    "make_model",
    "run_pipeline",
    "select_model",
]
