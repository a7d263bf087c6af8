"""The alert signals of one decision (controller/alert_signals.py) and their export (ControllerMetrics.observe)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from controller import alert_signals
from controller.decide import decide
from controller.decision_values import Decision, DecisionState, ForecastInput, Observations
from controller.loop_metrics import ControllerMetrics
from controller.overrides import OverrideKind, OverrideValue
from controller.policy import ScalingPolicy

NOW = 1_700_000_000.0
POLICY = ScalingPolicy(min_replicas=1, max_replicas=10, replica_capacity_rps=10.0, capacity_latency_slo_ms=50.0)


def _observations(rps: list[float], p95: list[float] | None = None, **extra: object) -> Observations:
    return Observations(
        current_replicas=2, ready_replicas=2, rps=rps, latency_p95_ms=p95 if p95 is not None else [],
        last_sample_ts=NOW, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def _forecast(upper: float, created_at: float = NOW - 60, history_s: float | None = 86_400.0) -> ForecastInput:
    """Minute intervals from 10 minutes ago to an hour ahead, the same upper band in each."""
    ts = np.arange(NOW - 600, NOW + 3600, 60.0)
    return ForecastInput(
        created_at=created_at, target_ts=ts, upper=np.full(ts.size, upper), point=np.full(ts.size, upper * 0.8),
        step_s=60.0, history_s=history_s,
    )  # fmt: skip


def _decision(observations: Observations, forecast: ForecastInput | None) -> Decision:
    return decide(POLICY, observations, forecast, DecisionState(), NOW)


@pytest.mark.parametrize(
    ("forecast", "overrides", "state"),
    [
        (_forecast(20.0), (), "used"),
        (None, (), "missing"),
        (_forecast(20.0, created_at=NOW - 3 * 3600), (), "stale"),
        (_forecast(20.0, history_s=60.0), (), "young"),
        (_forecast(float("nan")), (), "rejected"),
        (_forecast(20.0), (OverrideValue(OverrideKind.REACTIVE_ONLY, NOW - 10),), "disabled"),
    ],
)
def test_forecast_state_says_why_the_forecast_was_or_was_not_used(
    forecast: ForecastInput | None, overrides: tuple[OverrideValue, ...], state: str
) -> None:
    observations = _observations([15.0] * 60, overrides=overrides)
    decision = _decision(observations, forecast)
    assert (decision.predictive is not None) == (state == "used")
    assert alert_signals.forecast_state(POLICY, observations, forecast, decision, NOW) == state


def test_forecast_misses_count_each_covered_second_above_the_band_once() -> None:
    rps = [10.0] * 50 + [30.0] * 9 + [float("nan")]  # the last 9 seconds with a rate above the band of 20
    observations = _observations(rps)
    first = alert_signals.forecast_misses(observations, _forecast(20.0), None)
    assert (first.judged, first.bad, first.through) == (59, 9, NOW)
    again = alert_signals.forecast_misses(observations, _forecast(20.0), first.through)  # the same window again
    assert (again.judged, again.bad) == (0, 0)
    later = alert_signals.forecast_misses(_observations(rps[5:] + [30.0] * 5), _forecast(20.0), NOW - 5)
    assert (later.judged, later.bad) == (5, 5)  # the window moved 5 s on: only those 5 s are new


def test_forecast_misses_judge_only_seconds_a_forecast_interval_covers() -> None:
    forecast = _forecast(20.0)
    uncovered = ForecastInput(
        created_at=NOW, target_ts=forecast.target_ts + 3600, upper=forecast.upper, step_s=60.0
    )  # starts in an hour
    observations = _observations([30.0] * 60)
    assert alert_signals.forecast_misses(observations, uncovered, None).judged == 0
    assert alert_signals.forecast_misses(observations, None, None) == alert_signals.Tally(0, 0, NOW)


def test_slo_violations_count_measured_seconds_over_the_slo() -> None:
    p95 = [40.0] * 30 + [80.0] * 20 + [float("nan")] * 10
    tally = alert_signals.slo_violations(_observations([10.0] * 60, p95), 50.0, None)
    assert (tally.judged, tally.bad) == (50, 20)
    assert alert_signals.latest(np.array(p95)) == 80.0
    assert math.isnan(alert_signals.latest(np.array([float("nan")])))


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_observe_exports_the_alert_signals_and_forget_drops_them() -> None:
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    observations = _observations([10.0] * 30 + [30.0] * 30, [80.0] * 60)
    forecast = _forecast(20.0)
    decision = _decision(observations, forecast)
    metrics.observe("a", POLICY, observations, forecast, decision, NOW)
    metrics.observe("a", POLICY, observations, forecast, decision, NOW)  # the same seconds: not counted twice

    assert _value(registry, "prewarm_controller_max_replicas", deployment="a") == 10
    assert _value(registry, "prewarm_controller_forecast_state", deployment="a", state="used") == 1
    assert _value(registry, "prewarm_controller_forecast_state", deployment="a", state="missing") == 0
    assert _value(registry, "prewarm_controller_forecast_age_seconds", deployment="a") == 60
    assert _value(registry, "prewarm_controller_forecast_checked_seconds_total", deployment="a") == 60
    assert _value(registry, "prewarm_controller_forecast_exceeded_seconds_total", deployment="a") == 30
    assert _value(registry, "prewarm_controller_latency_slo_violation_seconds_total", deployment="a") == 60
    assert _value(registry, "prewarm_controller_latency_slo_seconds", deployment="a") == 0.05
    assert _value(registry, "prewarm_controller_dry_run", deployment="a") == 0

    metrics.forget("a")
    assert _value(registry, "prewarm_controller_forecast_state", deployment="a", state="used") is None
    assert _value(registry, "prewarm_controller_forecast_checked_seconds_total", deployment="a") is None


def test_bucket_deployments_cover_every_bucket() -> None:
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    metrics.set_bucket_deployments({0: 3, 2: 1}, 4)
    assert [_value(registry, "prewarm_controller_bucket_deployments", bucket=str(b)) for b in range(4)] == [3, 0, 1, 0]


def test_a_failing_export_costs_the_series_not_the_decision(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    broken = object()  # not Observations: exporting fails inside
    for _ in range(2):
        metrics.observe("a", POLICY, broken, None, _decision(_observations([1.0]), None), NOW)  # type: ignore[arg-type]
    assert _value(registry, "prewarm_controller_errors_total", deployment="a", stage="unexpected") == 2
    assert len([r for r in caplog.records if "alert metrics failed" in r.getMessage()]) == 1  # logged once
