"""decide(): each step on its own and the order in which they apply (docs/decision.md)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from controller.decide import Decision, DecisionState, ForecastInput, Observations, decide
from controller.overrides import OverrideKind, OverrideValue
from controller.policy import ScalingPolicy

NOW = 100_000.0


def policy(**fields: object) -> ScalingPolicy:
    """A policy whose forecasts are planned at 70 % (so 280 rps = one replica, as in these examples)."""
    return ScalingPolicy.model_validate({"forecast_utilisation": 0.7, **fields})


def obs(
    current: int = 5,
    ready: int | None = None,
    cpu: float | None = 50.0,
    rps: float = 100.0,
    latency: float | None = 20.0,
    queue: float | None = 0.0,
    memory: float | None = None,
    age_s: float = 1.0,
    seconds: int = 60,
    startup_s: float | None = 20.0,
    overrides: tuple[OverrideValue, ...] = (),
    at: float = NOW,
) -> Observations:
    def series(v: float | None) -> np.ndarray:
        return np.empty(0) if v is None else np.full(seconds, float(v))

    return Observations(
        current_replicas=current,
        ready_replicas=current if ready is None else ready,
        rps=series(rps),
        cpu_percent=series(cpu),
        latency_p95_ms=series(latency),
        queue_length=series(queue),
        memory_percent=series(memory),
        last_sample_ts=at - age_s,
        replica_startup_s=startup_s,
        overrides=overrides,
    )


def forecast(
    upper: float, created_at: float = NOW - 10, span_s: float = 3600, step_s: float = 60
) -> ForecastInput:
    ts = np.arange(created_at - created_at % step_s, created_at + span_s, step_s)
    return ForecastInput(created_at=created_at, target_ts=ts, upper=np.full(ts.size, upper), step_s=step_s)


def run(
    p: ScalingPolicy | None = None,
    o: Observations | None = None,
    f: ForecastInput | None = None,
    state: DecisionState | None = None,
    now: float = NOW,
) -> Decision:
    return decide(p or policy(max_replicas=50), o or obs(), f, state or DecisionState(), now)


def steps_of(d: Decision) -> list[str]:
    return [r.step for r in d.reasons]


# --- lead time ---------------------------------------------------------------------------------------------


def test_lead_time_is_measured_startup_plus_margin() -> None:
    d = run(policy(lead_time_margin_s=7), obs(startup_s=23))
    assert d.lead_time_s == 30


def test_lead_time_uses_the_default_startup_until_measured() -> None:
    d = run(policy(lead_time_margin_s=5, default_replica_startup_s=40), obs(startup_s=None))
    assert d.lead_time_s == 45


# --- predictive --------------------------------------------------------------------------------------------


def test_predictive_serves_the_upper_band_at_target_utilisation() -> None:
    d = run(o=obs(cpu=10), f=forecast(1840))  # 1840 / (400 * 0.7) = 6.57
    assert d.predictive == 7 and d.desired == 7 and d.source == "predictive"
    assert "upper forecast 1840 rps over the next 90 s / (400 rps x 0.7) -> 7" in d.reasons[1].message


def test_predictive_looks_over_the_whole_lead_time_and_horizon_window() -> None:
    ts = np.arange(NOW - 60, NOW + 3600, 60)
    upper = np.where(ts >= NOW + 60, 2800.0, 280.0)  # a surge 60 s ahead, inside now + 30 + 60
    f = ForecastInput(created_at=NOW - 60, target_ts=ts, upper=upper, step_s=60)
    assert run(o=obs(cpu=10), f=f).predictive == 10


def test_predictive_does_not_look_beyond_the_window() -> None:
    ts = np.arange(NOW - 60, NOW + 3600, 60)
    upper = np.where(ts >= NOW + 600, 2800.0, 280.0)
    f = ForecastInput(created_at=NOW - 60, target_ts=ts, upper=upper, step_s=60)
    assert run(o=obs(cpu=10), f=f).predictive == 1


@pytest.mark.parametrize(
    ("f", "why"),
    [
        (None, "no forecast"),
        (forecast(1000, created_at=NOW - 10_000, span_s=20_000), "stale"),
        (forecast(1000, span_s=30), "does not cover"),
        (forecast(float("nan")), "NaN"),
        (forecast(-5), "negative"),
        (forecast(1000 * 100), "absurd"),
    ],
)
def test_bad_forecasts_are_ignored_with_a_reason_and_reactive_decides(
    f: ForecastInput | None, why: str
) -> None:
    d = run(o=obs(cpu=91, current=5), f=f)  # reactive: ceil(5 * 91 / 70) = 7
    assert d.predictive is None
    assert why in d.reasons[1].message
    assert d.desired == 7 and d.source == "reactive"


def test_predictive_plans_the_upper_band_at_the_forecast_utilisation() -> None:
    d = run(ScalingPolicy(max_replicas=50), obs(cpu=10), forecast(1840))  # 1840 / (400 * 0.8) = 5.75
    assert d.predictive == 6 and d.desired == 6
    assert "(400 rps x 0.8) -> 6" in d.reasons[1].message


def test_forecast_utilisation_one_plans_the_band_at_full_capacity() -> None:
    p = policy(max_replicas=50, forecast_utilisation=1.0, forecast_utilisation_max=1.0)
    assert run(p, obs(cpu=10), forecast(1840)).predictive == 5


def test_a_forecast_fitted_on_too_little_history_is_ignored() -> None:
    young = dataclasses.replace(forecast(5000), history_s=600.0)
    d = run(policy(max_replicas=50, forecast_min_history_s=1800), obs(cpu=91, current=5), young)
    assert d.predictive is None and "only 600 s of history (min 1800 s)" in d.reasons[1].message
    assert d.desired == 7 and d.source == "reactive"


def test_a_forecast_with_enough_history_is_used() -> None:
    old_enough = dataclasses.replace(forecast(2800), history_s=1800.0)
    assert run(policy(max_replicas=50, forecast_min_history_s=1800), obs(cpu=10), old_enough).predictive == 10


def test_reactive_only_override_ignores_the_forecast() -> None:
    o = obs(cpu=50, overrides=(OverrideValue(OverrideKind.REACTIVE_ONLY, NOW - 10, NOW + 10),))
    d = run(o=o, f=forecast(5000))
    assert d.predictive is None and "reactive-only" in d.reasons[1].message
    assert d.desired == 5


# --- reactive ----------------------------------------------------------------------------------------------


def test_reactive_scales_up_in_hpa_ratio_form_above_the_cpu_threshold() -> None:
    assert run(o=obs(current=4, cpu=95)).desired == math.ceil(4 * 95 / 70)


def test_reactive_ignores_changes_within_the_tolerance() -> None:
    assert run(o=obs(current=10, cpu=75)).desired == 10  # 75 / 70 = 1.07 < 1.1


def test_reactive_holds_inside_the_band_when_alone() -> None:
    assert run(o=obs(current=10, cpu=45)).desired == 10


def test_reactive_scales_down_below_the_down_threshold_once_stabilised() -> None:
    p = policy(max_replicas=50, scale_down_stabilisation_s=0)
    assert run(p, obs(current=10, cpu=21)).desired == 3  # ceil(10 * 21 / 70)


def test_memory_above_its_threshold_scales_up() -> None:
    assert run(o=obs(current=4, cpu=40, memory=100)).desired == 5  # ceil(4 * 100 / 80)


def test_memory_in_its_band_prevents_a_cpu_scale_down() -> None:
    p = policy(max_replicas=50, scale_down_stabilisation_s=0)
    assert run(p, obs(current=10, cpu=10, memory=60)).desired == 10


def test_latency_above_the_threshold_scales_up() -> None:
    assert run(o=obs(current=4, cpu=60, latency=150)).desired == 6


def test_queue_above_the_threshold_scales_up() -> None:
    assert run(o=obs(current=2, cpu=60, queue=30)).desired == 6


def test_a_queue_vote_is_limited_to_what_the_load_needs_or_hpa_rate() -> None:
    # queue 50,000 / 10 asks 5000x; the load (1000 rps + 50,000 drained in 60 s) needs ceil(1833 / 280) = 7
    d = run(o=obs(current=3, cpu=60, queue=50_000, rps=1000))
    assert d.desired == 7 and "limited to 7" in d.reasons[2].message


def test_a_latency_vote_without_measured_rate_is_limited_to_hpa_scale_up_rate() -> None:
    o = obs(current=3, cpu=60, latency=5000, rps=1000)
    o = dataclasses.replace(o, rps=np.empty(0))
    assert run(o=o).desired == 7  # max(2 x 3, 3 + 4)


def test_latency_votes_on_the_recent_value_not_the_minute_mean() -> None:
    o = obs(current=4, cpu=60, latency=20)
    lat = o.latency_p95_ms.copy()
    lat[:30] = 2000.0  # a minute-old overload, resolved for 30 s: the 60 s mean is still 1010 ms
    assert run(o=dataclasses.replace(o, latency_p95_ms=lat)).desired == 4


def test_a_replica_is_started_for_traffic_when_none_runs() -> None:
    p = policy(min_replicas=0)
    assert run(p, obs(current=0, cpu=None, latency=None, queue=None, rps=3)).desired == 1


def test_stale_metrics_and_no_forecast_keep_the_current_count() -> None:
    d = run(o=obs(current=6, cpu=5, age_s=3600))
    assert d.desired == 6 and d.source == "hold"


def test_no_metrics_at_all_keeps_the_current_count() -> None:
    o = Observations(current_replicas=4, ready_replicas=4)
    d = run(o=o)
    assert d.desired == 4 and d.source == "hold"


def test_missing_seconds_are_ignored_in_the_window_means() -> None:
    o = obs(current=4, cpu=95)
    cpu = o.cpu_percent.copy()
    cpu[::2] = np.nan
    o2 = Observations(**{**o.__dict__, "cpu_percent": cpu})
    assert run(o=o2).desired == math.ceil(4 * 95 / 70)


# --- panic -------------------------------------------------------------------------------------------------


def burst(current: int, latency_recent: float) -> Observations:
    o = obs(current=current, cpu=60, latency=20)
    lat = o.latency_p95_ms.copy()
    lat[-6:] = latency_recent
    return Observations(**{**o.__dict__, "latency_p95_ms": lat})


def test_a_burst_in_the_short_window_starts_panic() -> None:
    d = run(o=burst(4, 500))  # panic window asks ceil(4 * 500 / 100) = 20 >= 2 x 4
    assert d.source == "panic" and d.new_state.panic_triggered_at == NOW
    assert d.desired >= 8


def test_no_scale_down_while_panicking() -> None:
    first = run(o=burst(4, 500))
    later = run(o=obs(current=20, cpu=5, latency=5, at=NOW + 30), state=first.new_state, now=NOW + 30)
    assert later.desired >= 20


def test_panic_ends_after_a_calm_stable_window() -> None:
    p = policy(max_replicas=50, scale_down_stabilisation_s=0)
    first = run(p, burst(4, 500))
    later = run(p, obs(current=20, cpu=5, latency=5, at=NOW + 61), state=first.new_state, now=NOW + 61)
    assert later.new_state.panic_triggered_at is None and later.desired < 20


# --- combine -----------------------------------------------------------------------------------------------


def test_reactive_wins_when_it_needs_more_than_the_forecast() -> None:
    d = run(o=obs(current=4, cpu=95), f=forecast(280))
    assert d.desired == 6 and d.source == "reactive"


def test_predictive_scales_down_below_the_band_hold() -> None:
    p = policy(max_replicas=50, scale_down_stabilisation_s=0)
    d = run(p, obs(current=10, cpu=40), forecast(560))  # predictive 2, load needs ceil(10*40/70)=6
    assert d.desired == 6


# --- stabilisation, steps, budget, bounds ------------------------------------------------------------------


def test_scale_down_waits_for_the_highest_recommendation_of_the_window() -> None:
    d1 = run(o=obs(current=9, cpu=95))  # reactive alone: ceil(9 * 95 / 70) = 13
    d2 = run(o=obs(current=13, cpu=10, at=NOW + 100), state=d1.new_state, now=NOW + 100)
    assert d2.desired == 13 and d2.source == "stabilised"
    assert "held 13 for the 300 s scale-down window" in str(d2.reasons[-1])
    d3 = run(o=obs(current=13, cpu=10, at=NOW + 301), state=d2.new_state, now=NOW + 301)
    assert d3.desired == 2  # the load needs ceil(13 * 10 / 70)


def test_with_a_usable_forecast_scale_down_waits_only_the_forecast_window() -> None:
    d1 = run(o=obs(current=9, cpu=10), f=forecast(2520))  # predictive 9
    d2 = run(o=obs(current=9, cpu=10, at=NOW + 30), f=forecast(280), state=d1.new_state, now=NOW + 30)
    assert d2.desired == 9 and "held 9 for the 60 s scale-down window (forecast in use)" in str(
        d2.reasons[-1]
    )
    d3 = run(o=obs(current=9, cpu=10, at=NOW + 61), f=forecast(280), state=d2.new_state, now=NOW + 61)
    assert d3.desired == 2  # the band says 1, the load needs ceil(9 * 10 / 70) = 2


def test_the_long_window_applies_again_when_the_forecast_becomes_unusable() -> None:
    d1 = run(o=obs(current=9, cpu=10), f=forecast(2520))
    d2 = run(o=obs(current=9, cpu=10, at=NOW + 61), f=forecast(280), state=d1.new_state, now=NOW + 61)
    assert d2.desired == 2
    # no forecast any more: the reactive path alone is held by the 300 s window, which still remembers 9
    d4 = run(o=obs(current=9, cpu=10, at=NOW + 120), state=d2.new_state, now=NOW + 120)
    assert d4.desired == 9 and d4.source == "stabilised"


def test_no_scale_down_while_the_metrics_cover_under_half_the_stable_window() -> None:
    p = policy(max_replicas=50, scale_down_stabilisation_s=0)
    d = run(p, obs(current=10, cpu=10, seconds=5))
    assert (
        d.desired == 10
        and d.source == "warm-up"
        and "cover only 5 s of the 60 s window" in str(d.reasons[-1])
    )


def test_warm_up_counts_from_the_oldest_measured_second() -> None:
    p = policy(max_replicas=50, scale_down_stabilisation_s=0)
    o = obs(current=10, cpu=10)
    cpu = o.cpu_percent.copy()
    cpu[:50] = np.nan  # a 60 s window measured only in its last 10 s
    o = dataclasses.replace(
        o, cpu_percent=cpu, rps=np.empty(0), latency_p95_ms=np.empty(0), queue_length=np.empty(0)
    )
    assert run(p, o).desired == 10
    assert run(p, obs(current=10, cpu=10, seconds=30)).desired == 2  # half the window: ceil(10 * 10 / 70)


def test_warm_up_does_not_delay_a_scale_up() -> None:
    assert run(o=obs(current=4, cpu=95, seconds=5)).desired == math.ceil(4 * 95 / 70)


def test_scale_up_is_not_delayed_by_stabilisation() -> None:
    d1 = run(o=obs(current=2, cpu=10), f=forecast(280))
    d2 = run(o=obs(current=2, cpu=10), f=forecast(2800), state=d1.new_state, now=NOW + 5)
    assert d2.desired == 10


def test_max_step_up_limits_one_decision() -> None:
    d = run(policy(max_replicas=50, max_step_up=2), obs(current=3, cpu=10), forecast(2800))
    assert d.desired == 5 and d.source == "step-limit"


def test_max_step_down_limits_one_decision() -> None:
    p = policy(max_replicas=50, max_step_down=1, scale_down_stabilisation_s=0)
    assert run(p, obs(current=8, cpu=10), forecast(280)).desired == 7


def test_cost_budget_caps_the_count() -> None:
    p = policy(max_replicas=50, price_per_replica_hour=0.5, budget_money_per_hour=3.0)
    d = run(p, obs(current=3, cpu=10), forecast(2800))
    assert d.desired == 6 and d.source == "budget"


def test_replica_hour_budget_caps_the_count() -> None:
    p = policy(max_replicas=50, budget_replica_hours_per_hour=4)
    assert run(p, obs(current=3, cpu=10), forecast(2800)).desired == 4


def test_bounds_clamp_to_max_with_a_reason() -> None:
    d = run(policy(max_replicas=12), obs(current=3, cpu=10, rps=1000), forecast(5000))
    assert d.desired == 12 and "clamped to max 12" in str(d.reasons[-1])


def test_bounds_beat_a_budget_below_min() -> None:
    p = policy(min_replicas=3, budget_replica_hours_per_hour=1)
    assert run(p, obs(current=3, cpu=10), forecast(2800)).desired == 3


# --- overrides ---------------------------------------------------------------------------------------------


def over(
    kind: OverrideKind, value: int | None = None, start: float = NOW - 10, end: float = NOW + 600
) -> tuple[OverrideValue, ...]:
    return (OverrideValue(kind, start, end, value),)


def test_pin_sets_exactly_n() -> None:
    d = run(o=obs(current=3, cpu=95, overrides=over(OverrideKind.PIN, 8)))
    assert d.desired == 8 and d.source == "pin"


def test_an_active_pin_is_named_even_when_the_count_already_matches() -> None:
    # the reactive path alone would also keep 4: the log must still say the pin is in charge, and until when
    d = run(o=obs(current=4, cpu=50, overrides=over(OverrideKind.PIN, 4, end=NOW + 600)))
    assert d.desired == 4 and d.source == "pin"
    assert any(str(r).startswith("pin: override: exactly 4 until 1970-01-02 ") for r in d.reasons)


def test_floor_raises_to_at_least_n_and_beats_the_budget() -> None:
    p = policy(max_replicas=50, budget_replica_hours_per_hour=2)
    d = run(p, obs(current=2, cpu=40, overrides=over(OverrideKind.FLOOR, 9)))
    assert d.desired == 9 and d.source == "floor"


def test_floor_does_not_lower_a_higher_count() -> None:
    assert run(o=obs(current=4, cpu=95, overrides=over(OverrideKind.FLOOR, 2))).desired == 6


def test_freeze_keeps_the_current_count() -> None:
    d = run(o=obs(current=4, cpu=95, overrides=over(OverrideKind.FREEZE)))
    assert d.desired == 4 and d.source == "freeze"


def test_pin_outside_the_bounds_is_clamped() -> None:
    d = run(policy(max_replicas=10), obs(current=4, overrides=over(OverrideKind.PIN, 30)))
    assert d.desired == 10


def test_dry_run_decides_but_does_not_act() -> None:
    d = run(o=obs(current=4, cpu=95, overrides=over(OverrideKind.DRY_RUN)))
    assert d.desired == 6 and not d.act and d.reasons[-1].step == "dry-run"


def test_expired_overrides_stop_applying_by_themselves() -> None:
    o = obs(current=4, cpu=95, overrides=over(OverrideKind.PIN, 1, start=NOW - 100, end=NOW))
    assert run(o=o).desired == 6


def test_future_overrides_do_not_apply_yet() -> None:
    o = obs(current=4, cpu=95, overrides=over(OverrideKind.FREEZE, start=NOW + 1, end=NOW + 100))
    assert run(o=o).desired == 6


# --- order ---------------------------------------------------------------------------------------------------


def test_steps_are_reported_in_the_documented_order() -> None:
    p = policy(max_replicas=6, max_step_up=20, budget_replica_hours_per_hour=8)
    o = obs(current=2, cpu=10, overrides=(*over(OverrideKind.FLOOR, 7), *over(OverrideKind.DRY_RUN)))
    d = run(p, o, forecast(28000 / 10))  # predictive 10 -> budget 8 -> floor keeps 8 -> max 6 -> dry-run
    assert steps_of(d) == ["lead-time", "predictive", "reactive", "combine", "budget", "bounds", "dry-run"]
    assert d.desired == 6


def test_stabilisation_comes_before_the_step_limit() -> None:
    p = policy(max_replicas=50, max_step_down=2)
    d1 = run(p, obs(current=10, cpu=10), forecast(2800))
    d2 = run(p, obs(current=10, cpu=10), forecast(280), d1.new_state, NOW + 5)
    assert d2.desired == 10 and "step-limit" not in steps_of(d2)


def test_state_is_not_mutated() -> None:
    state = DecisionState()
    run(o=obs(current=3, cpu=95), state=state)
    assert state == DecisionState()


def test_a_budget_below_one_replica_does_not_scale_to_zero() -> None:
    p = policy(min_replicas=0, price_per_replica_hour=2.0, budget_money_per_hour=1.0)
    assert run(p, obs(current=3, cpu=10), forecast(2800)).desired == 1


def test_request_load_over_the_target_utilisation_scales_up_where_cpu_is_idle() -> None:
    # I/O-bound replicas: CPU says nothing, 1200 rps on 2 replicas of 400 rps at 70 % needs ceil(1200 / 280) = 5.
    d = run(policy(max_replicas=50), obs(current=2, cpu=5, rps=1200, latency=None, queue=None))
    assert d.desired == 5
    assert any("load 150 > 70" in str(r) for r in d.reasons)


def test_a_burst_of_requests_panics_on_the_load_signal() -> None:
    rates = np.concatenate([np.full(54, 200.0), np.full(6, 2000.0)])  # the last 6 s: 10x
    observations = Observations(
        current_replicas=2, ready_replicas=2, rps=rates, cpu_percent=np.full(60, 5.0),
        last_sample_ts=NOW - 1, replica_startup_s=20.0,
    )  # fmt: skip
    d = decide(policy(max_replicas=50), observations, None, DecisionState(), NOW)
    assert d.source == "panic" and d.desired >= 5


# --- utilisation: run hotter when the forecast has earned it ----------------------------------------------


def banded(upper: float, point: float, created_at: float = NOW - 10) -> ForecastInput:
    f = forecast(upper, created_at)
    return dataclasses.replace(f, point=np.full(f.target_ts.size, point), lower=np.zeros(f.target_ts.size))


def test_planned_utilisation_follows_the_band_width() -> None:
    from controller.steps import planned_utilisation

    p = ScalingPolicy(forecast_utilisation=0.8, forecast_utilisation_max=0.95, forecast_tail_bands=1.4)
    tight = planned_utilisation(p, 1000.0, 990.0)  # 1 % band: 0.95 / 1.014 = 0.937
    assert tight.planned == pytest.approx(0.95 / (1 + 1.4 * 0.01)) and tight.hot
    assert tight.band_width == pytest.approx(0.01)
    middle = planned_utilisation(p, 1000.0, 950.0)  # 5 %: 0.95 / 1.07 = 0.888
    assert middle.planned == pytest.approx(0.95 / 1.07) and middle.planned < tight.planned
    wide = planned_utilisation(p, 1000.0, 700.0)  # 30 %: 0.95 / 1.42 = 0.67, never below the floor
    assert wide.planned == 0.8 and not wide.hot
    unknown = planned_utilisation(p, 1000.0, None)
    assert unknown.planned == 0.8 and unknown.band_width is None
    assert "band 1.0 % of the upper forecast" in tight.reason.message and "hotter than 0.8" in tight.reason.message


def test_a_tight_band_plans_the_upper_forecast_hotter_and_says_so() -> None:
    p = ScalingPolicy(max_replicas=50)  # floor 0.8, max 0.95
    d = run(p, obs(cpu=10), banded(1840, 1820))  # band 1.1 %: 0.95 / 1.015 = 0.936; 1840 / 374 = 4.9
    assert d.predictive == 5 and d.planned_utilisation == pytest.approx(0.95 / (1 + 1.4 * 20 / 1840))
    assert steps_of(d)[:4] == ["lead-time", "utilisation", "predictive", "reactive"]
    wide = run(p, obs(cpu=10), banded(1840, 1000))
    assert wide.predictive == 6 and wide.planned_utilisation == 0.8  # 1840 / 320 = 5.75


def test_running_hot_the_load_and_cpu_thresholds_follow_the_plan() -> None:
    # 5 replicas of 400 rps carry 1800 rps (90 %), as a tight forecast of 1840 planned: no reactive scale-up.
    p = ScalingPolicy(max_replicas=50)
    hot = run(p, obs(current=5, cpu=90, rps=1800), banded(1840, 1820))
    assert hot.desired == 5 and hot.source == "predictive"
    assert "thresholds at the forecast's planned 94 %" in str(hot.reasons[3])
    # the same load without a forecast is over the 70 % thresholds: ceil(5 x 90 / 70) = 7
    assert run(p, obs(current=5, cpu=90, rps=1800)).desired == 7


def test_running_hot_a_load_beyond_the_plan_still_scales_up() -> None:
    # The forecast said 1840 but 2400 rps arrive on 5 replicas (120 % load): the forecast is wrong.
    d = run(ScalingPolicy(max_replicas=50), obs(current=5, cpu=100, rps=2400), banded(1840, 1820))
    assert d.desired == 7 and d.source == "reactive"  # ceil(5 x 120 / 93.6) = 7


def test_running_hot_panic_keeps_the_policys_own_thresholds() -> None:
    # The last 6 s bring 3000 rps on 5 replicas: 150 % of their capacity, 2.1x the 70 % target: panic.
    rps = np.concatenate([np.full(54, 1800.0), np.full(6, 3000.0)])
    o = dataclasses.replace(obs(current=5, cpu=90), rps=rps)
    d = run(ScalingPolicy(max_replicas=50), o, banded(1840, 1820))
    assert d.source == "panic" and d.desired > 5


def test_the_hottest_plan_cannot_be_cooler_than_the_floor() -> None:
    with pytest.raises(ValueError, match="forecast_utilisation_max"):
        ScalingPolicy(forecast_utilisation=0.9, forecast_utilisation_max=0.85)
