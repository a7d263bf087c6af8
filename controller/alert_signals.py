"""What the alert rules (deploy/prometheus/alerts.yaml, docs/alerts.md) need from one decision, as plain numbers.

Pure functions of a decision's inputs and result: the state of the forecast (used, or why not), and tallies of the
seconds the decision's metrics window holds that were not counted before: seconds above the forecast's upper band
and seconds over the latency SLO. They only describe; no scaling rule lives here (decide() does that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.decision_values import Decision, ForecastInput, Observations
from controller.overrides import OverrideKind, active_overrides
from controller.policy import ScalingPolicy

# The values of prewarm_controller_forecast_state{state}; exactly one is 1 per deployment.
FORECAST_STATES = ("used", "missing", "stale", "young", "rejected", "disabled")


def forecast_state(
    policy: ScalingPolicy, observations: Observations, forecast: ForecastInput | None, decision: Decision, now: float
) -> str:
    """Why the forecast did or did not take part in ``decision``: ``used`` (the predictive recommendation was
    computed), ``disabled`` (a reactive-only override), ``missing`` (no forecast stored), ``stale`` (older than
    ``forecast_max_age_s``), ``young`` (fitted on less than ``forecast_min_history_s``: expected for a new
    deployment), ``rejected`` (decide() refused it: window not covered, NaN, negative or absurd values)."""
    if decision.predictive is not None:
        return "used"
    kinds = {o.kind for o in active_overrides(observations.overrides, now)}
    if OverrideKind.REACTIVE_ONLY in kinds:
        return "disabled"
    if forecast is None:
        return "missing"
    if abs(now - forecast.created_at) > policy.forecast_max_age_s:
        return "stale"
    if forecast.history_s is not None and forecast.history_s < policy.forecast_min_history_s:
        return "young"
    return "rejected"


def dry_run(observations: Observations, now: float) -> bool:
    """Whether a dry-run override is active (decisions are logged, not applied: desired may differ from ready)."""
    return any(o.kind == OverrideKind.DRY_RUN for o in active_overrides(observations.overrides, now))


@dataclass(frozen=True)
class Tally:
    """Seconds newly seen in a window: how many had a value to judge, how many of those were bad, and the end of
    the newest second judged (the next tally starts after it)."""

    judged: int = 0
    bad: int = 0
    through: float | None = None


def _new_seconds(values: np.ndarray, last_sample_ts: float | None, after: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(end times, values) of the window's seconds ending after ``after`` (all of them when None)."""
    if last_sample_ts is None or values.size == 0:
        return np.empty(0), np.empty(0)
    # Second k from the end ends at last_sample_ts - k; it is new when that is after ``after``: k < last - after.
    count = values.size if after is None else min(values.size, max(0, math.ceil(last_sample_ts - after)))
    ends = last_sample_ts - np.arange(count - 1, -1, -1, dtype=np.float64)
    return ends, values[values.size - count :]


def forecast_misses(observations: Observations, forecast: ForecastInput | None, after: float | None) -> Tally:
    """Seconds after ``after`` with an observed rate and a forecast interval covering them, and of those the ones
    whose rate was above the interval's upper band (the band is the forecaster's 90 % quantile: about one second
    in ten above it is expected)."""
    ends, rps = _new_seconds(observations.rps, observations.last_sample_ts, after)
    if ends.size == 0:
        return Tally(through=after)
    through = float(ends[-1])
    if forecast is None or forecast.target_ts.size == 0:
        return Tally(through=through)
    starts = ends - 1.0
    index = np.searchsorted(forecast.target_ts, starts, side="right") - 1
    covered = (index >= 0) & np.isfinite(rps)
    covered &= starts < forecast.target_ts[np.clip(index, 0, None)] + forecast.step_s
    upper = forecast.upper[np.clip(index, 0, None)]
    covered &= np.isfinite(upper)
    above = covered & (rps > upper)
    return Tally(int(covered.sum()), int(above.sum()), through)


def slo_violations(observations: Observations, slo_ms: float, after: float | None) -> Tally:
    """Seconds after ``after`` with a measured p95 latency, and of those the ones over ``slo_ms``."""
    ends, p95 = _new_seconds(observations.latency_p95_ms, observations.last_sample_ts, after)
    if ends.size == 0:
        return Tally(through=after)
    measured = np.isfinite(p95)
    over = measured & (p95 > slo_ms)
    return Tally(int(measured.sum()), int(over.sum()), float(ends[-1]))


def latest(values: np.ndarray) -> float:
    """The newest finite value of a per-second window (NaN when there is none)."""
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan
