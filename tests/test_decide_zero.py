"""decide()'s scale-to-zero steps: to zero after the grace period, predictive wake-up, reactive activation."""

from __future__ import annotations

import dataclasses

import numpy as np

from controller.decide import DecisionState, ForecastInput, Observations, decide
from controller.overrides import OverrideKind, OverrideValue
from controller.policy import ScalingPolicy
from controller.zero import clock, idle_since

NOW = 100_000.0  # 1970-01-02 03:46:40 UTC
STEP = 60.0
FIRST = NOW - 10 - (NOW - 10) % STEP  # the forecast's first interval: 03:46:00


def policy(**fields: object) -> ScalingPolicy:
    return ScalingPolicy.model_validate({"min_replicas": 0, **fields})


def obs(
    current: int = 1,
    rps: list[float] | float = 0.0,
    seconds: int = 60,
    held: int = 0,
    overrides: tuple[OverrideValue, ...] = (),
) -> Observations:
    """Per-second windows ending at NOW - 1; ``rps`` a constant or the newest values (zeros before them)."""
    series = np.zeros(seconds)
    if isinstance(rps, list):
        series[seconds - len(rps) :] = rps
    else:
        series[:] = rps
    ready = current
    cpu = np.where(series > 0, 10.0, 0.0) if current else np.full(seconds, np.nan)
    return Observations(
        current_replicas=current,
        ready_replicas=ready,
        rps=series,
        cpu_percent=cpu,
        latency_p95_ms=np.full(seconds, 5.0 if current else np.nan),
        queue_length=np.zeros(seconds),
        last_sample_ts=NOW - 1,
        replica_startup_s=20.0,  # lead time 20 + 10 = 30 s; window 30 + 60 = 90 s
        overrides=overrides,
        held_requests=held,
    )


def forecast(traffic_from: float | None = None, rps: float = 3.0, quiet: float = 0.1) -> ForecastInput:
    """Upper band ``quiet`` rps, then ``rps`` from the interval starting at ``traffic_from``."""
    ts = np.arange(FIRST, FIRST + 7200, STEP)
    upper = np.full(ts.size, quiet)
    if traffic_from is not None:
        upper[ts >= traffic_from] = rps
    return ForecastInput(
        created_at=NOW - 10, target_ts=ts, upper=upper, step_s=STEP, point=upper / 2, history_s=86400.0
    )


def test_idle_for_the_grace_period_with_a_quiet_forecast_goes_to_zero() -> None:
    d = decide(policy(), obs(rps=[5.0] + [0.0] * 31), forecast(), DecisionState(), NOW)
    assert d.desired == 0 and d.source == "scale-to-zero"
    reason = next(r for r in d.reasons if r.step == "scale-to-zero")
    assert "idle 31 s and no traffic forecast for the next 90 s -> 0" in reason.message
    assert (reason.before, reason.after) == (1, 0)
    assert d.idle_since == NOW - 31 and d.new_state.idle_since == NOW - 31


def test_not_before_the_grace_period() -> None:
    d = decide(policy(), obs(rps=[5.0] + [0.0] * 20), forecast(), DecisionState(), NOW)
    assert d.desired == 1
    assert d.idle_since == NOW - 20
    assert not any(r.step == "scale-to-zero" for r in d.reasons)
    d = decide(
        policy(scale_to_zero_grace_s=15), obs(rps=[5.0] + [0.0] * 20), forecast(), DecisionState(), NOW
    )
    assert d.desired == 0


def test_never_to_zero_while_the_forecast_says_traffic_is_coming() -> None:
    inside = FIRST + 60  # 03:47:00, inside [now, now + 90 s]
    d = decide(policy(), obs(), forecast(inside), DecisionState(), NOW)
    assert d.desired >= 1
    assert not any(r.step == "scale-to-zero" for r in d.reasons)
    later = FIRST + 600  # 03:56:00: outside the window -> zero, wake one lead time before
    d = decide(policy(), obs(), forecast(later), DecisionState(), NOW)
    assert d.desired == 0
    assert d.next_wake_at == later - 30
    assert f"wake at {clock(later - 30)}" in d.reasons[-1].message


def test_the_threshold_is_the_policys() -> None:
    d = decide(policy(scale_to_zero_forecast_rps=5.0), obs(), forecast(FIRST + 60), DecisionState(), NOW)
    assert d.desired == 0  # 3 rps forecast is below a 5 rps threshold


def test_never_to_zero_while_requests_are_held() -> None:
    d = decide(policy(), obs(held=2), forecast(), DecisionState(), NOW)
    assert d.desired >= 1
    assert d.idle_since is None


def test_min_replicas_one_never_goes_to_zero() -> None:
    d = decide(ScalingPolicy(), obs(), forecast(), DecisionState(), NOW)
    assert d.desired == 1
    assert not any(r.step == "scale-to-zero" for r in d.reasons)


def test_without_a_forecast_it_goes_to_zero_like_knative() -> None:
    d = decide(policy(), obs(), None, DecisionState(), NOW)
    assert d.desired == 0
    assert "idle 60 s and no usable forecast -> 0" in d.reasons[-1].message


def test_not_during_warm_up() -> None:
    d = decide(policy(scale_to_zero_grace_s=10), obs(seconds=20), forecast(), DecisionState(), NOW)
    assert d.desired == 1


def test_a_missing_second_may_have_had_traffic() -> None:
    o = obs()
    rps = o.rps.copy()
    rps[-5] = np.nan
    d = decide(policy(), dataclasses.replace(o, rps=rps), forecast(), DecisionState(), NOW)
    assert d.desired == 1 and d.idle_since == NOW - 4


def test_idle_since_is_remembered_beyond_the_window() -> None:
    state = DecisionState(idle_since=NOW - 500)
    assert idle_since(obs(), state, True) == NOW - 500
    assert idle_since(obs(), DecisionState(), True) == NOW - 60
    assert idle_since(obs(rps=[1.0]), state, True) is None
    assert idle_since(obs(), state, False) == NOW - 500  # stale metrics: nothing new known


def test_wake_up_one_lead_time_before_forecast_traffic() -> None:
    start = FIRST + 60  # 03:47:00; lead 30 s -> wake at 03:46:30, i.e. now (03:46:40) is past it
    d = decide(policy(), obs(current=0), forecast(start), DecisionState(), NOW)
    assert d.desired == 1 and d.source == "wake-up"
    assert d.reasons[-1].message == "forecast 3 rps from 03:47:00 -> wake 1 replica at 03:46:30 (lead 30 s)"


def test_at_zero_waits_for_the_wake_up_time() -> None:
    start = FIRST + 300  # 03:51:00 -> wake at 03:50:30
    d = decide(policy(), obs(current=0), forecast(start), DecisionState(), NOW)
    assert d.desired == 0
    assert d.next_wake_at == start - 30 and d.new_state.next_wake_at == start - 30
    assert "wake at 03:50:30" in d.reasons[-1].message
    d = decide(policy(), obs(current=0), forecast(start), d.new_state, start - 30)
    assert d.desired == 1 and d.source == "wake-up"


def test_wake_up_plans_more_than_one_replica_when_the_forecast_needs_them() -> None:
    rps = 2.5 * 400 * 0.8  # upper band needing 3 replicas at the planned utilisation
    d = decide(
        policy(scale_to_zero_forecast_rps=0.5),
        obs(current=0),
        forecast(FIRST + 60, rps),
        DecisionState(),
        NOW,
    )
    assert d.desired == 3 and d.source == "wake-up"


def test_activate_on_held_requests_at_once() -> None:
    p = policy(max_step_up=1, scale_down_stabilisation_s=600)
    d = decide(p, obs(current=0, held=3), None, DecisionState(), NOW)
    assert d.desired == 1 and d.source == "activate"
    assert d.reasons[-1].message == "3 requests held at zero -> 1 at once"


def test_activate_on_arriving_requests() -> None:
    d = decide(policy(), obs(current=0, rps=[0.0, 2.0]), forecast(), DecisionState(), NOW)
    assert d.desired == 1 and d.source == "activate"


def test_at_zero_a_stale_reactive_vote_does_not_wake() -> None:
    # requests 40 s ago (before the deployment went to zero) still weigh on the 60 s mean
    d = decide(policy(), obs(current=0, rps=[4.0] + [0.0] * 39), None, DecisionState(), NOW)
    assert d.reactive == 1
    assert d.desired == 0
    assert d.reasons[-1].message == "at zero: no traffic and no usable forecast: stay at 0"


def override(kind: OverrideKind, value: int | None = None) -> OverrideValue:
    return OverrideValue(kind=kind, value=value, starts_at=NOW - 100, ends_at=NOW + 100)


def test_overrides_beat_scale_to_zero() -> None:
    d = decide(policy(), obs(overrides=(override(OverrideKind.PIN, 2),)), forecast(), DecisionState(), NOW)
    assert d.desired == 2 and d.source == "pin"
    assert d.next_wake_at is None
    d = decide(policy(), obs(overrides=(override(OverrideKind.FLOOR, 1),)), forecast(), DecisionState(), NOW)
    assert d.desired == 1 and d.source == "floor"
    frozen = (override(OverrideKind.FREEZE),)
    d = decide(policy(), obs(current=0, held=5, overrides=frozen), None, DecisionState(), NOW)
    assert d.desired == 0 and d.source == "freeze"  # a freeze is a freeze, even with requests held


def test_step_down_limit_takes_the_way_down_in_steps() -> None:
    d = decide(policy(max_step_down=1), obs(current=3), forecast(), DecisionState(), NOW)
    assert d.desired == 2
    assert [r.step for r in d.reasons[-2:]] == ["scale-to-zero", "step-limit"]


def test_budget_does_not_keep_a_replica() -> None:
    d = decide(policy(budget_replica_hours_per_hour=1), obs(), forecast(), DecisionState(), NOW)
    assert d.desired == 0


def test_the_reactive_path_alone_never_takes_the_last_replica_before_the_grace_period() -> None:
    # no forecast and an empty window: the reactive path asks for 0, but the stretch began only 20 s ago
    d = decide(policy(), obs(), None, DecisionState(idle_since=NOW - 20), NOW)
    assert d.desired == 1
    assert d.reasons[-1].message == "not to zero: idle only 20 s (grace 30 s) -> keep 1"


def test_never_to_zero_on_stale_metrics() -> None:
    stale = dataclasses.replace(obs(), last_sample_ts=NOW - 3600)
    d = decide(policy(), stale, forecast(), DecisionState(idle_since=NOW - 3600), NOW)
    assert d.desired == 1
