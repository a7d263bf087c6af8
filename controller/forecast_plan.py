"""From a scaling policy to the forecasting pipeline and back: the plan it runs, and its result as decide() takes it.

The scheduled job (``controller/forecast_job.py``) and the simulator (``controller/simulation/prewarm_policy.py``)
both build their plan here, so they forecast the same span for the same lead time, with the same model choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.decision_values import ForecastInput
from controller.policy import ScalingPolicy
from controller.steps import lead_time
from forecaster.pipeline import ForecastPlan, PipelineForecast
from forecaster.registry import DEFAULT_CANDIDATES
from forecaster.types import DEFAULT_QUANTILES
from prewarm.settings import Settings


@dataclass(frozen=True)
class ForecasterSettings:
    """The process-wide forecaster settings (``PREWARM_FORECAST_*``) a plan needs, as plain values."""

    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    quantiles: tuple[float, float] = DEFAULT_QUANTILES
    selection_eval_s: float = 86_400.0
    reselect_interval_s: float = 86_400.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ForecasterSettings:
        return cls(
            candidates=tuple(c.strip() for c in settings.forecast_candidates.split(",") if c.strip()),
            quantiles=(settings.forecast_quantile_low, settings.forecast_quantile_high),
            selection_eval_s=settings.forecast_selection_eval_s,
            reselect_interval_s=settings.forecast_reselect_interval_s,
        )


def plan_for(
    policy: ScalingPolicy, measured_startup_s: float | None, settings: ForecasterSettings
) -> ForecastPlan:
    """The forecast a deployment with ``policy`` needs, with its lead time from the measured replica startup."""
    return ForecastPlan(
        model=policy.forecast_model,
        step_s=policy.forecast_step_s,
        history_s=policy.forecast_history_s,
        lead_s=lead_time(policy, measured_startup_s).lead_s,
        horizon_s=policy.horizon_s,
        refit_interval_s=policy.forecast_refit_interval_s,
        refit_history_fraction=policy.forecast_refit_history_fraction,
        statistic=policy.forecast_statistic,
        time_compression=policy.forecast_time_compression,
        candidates=settings.candidates,
        quantiles=settings.quantiles,
        selection_eval_s=settings.selection_eval_s,
        reselect_interval_s=settings.reselect_interval_s,
    )


def forecast_input(result: PipelineForecast) -> ForecastInput:
    """The pipeline's forecast as decide() takes it (the live loop reads the same values back from the store)."""
    forecast = result.forecast
    return ForecastInput(
        created_at=result.created_at,
        target_ts=forecast.target_ts,
        upper=forecast.upper,
        step_s=forecast.step_s,
        point=forecast.point,
        lower=forecast.lower,
        model=forecast.model,
        history_peak_rps=result.history_peak,
        history_s=result.history_s,
    )
