"""decide(): invariants over random inputs (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.decide import DecisionState, ForecastInput, Observations, decide
from controller.overrides import OverrideKind, OverrideValue
from controller.policy import ScalingPolicy

NOW = 1_000_000.0

weird = st.one_of(
    st.floats(min_value=-1e6, max_value=1e9, allow_nan=False),
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(0.0),
)


@st.composite
def policies(draw: st.DrawFn) -> ScalingPolicy:
    low = draw(st.integers(0, 5))
    high = draw(st.integers(max(low, 1), 40))
    return ScalingPolicy(
        min_replicas=low,
        max_replicas=high,
        replica_capacity_rps=draw(st.floats(1, 1000)),
        target_utilisation=draw(st.floats(0.1, 1.0)),
        max_step_up=draw(st.none() | st.integers(1, 10)),
        max_step_down=draw(st.none() | st.integers(1, 10)),
        scale_down_stabilisation_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
        budget_replica_hours_per_hour=draw(st.none() | st.floats(0.5, 50)),
        forecast_utilisation=(floor := draw(st.floats(0.1, 1.0))),
        forecast_utilisation_max=draw(st.floats(floor, 1.0)),
        forecast_tail_bands=draw(st.floats(0.0, 5.0)),
        forecast_scale_down_stabilisation_s=draw(st.sampled_from([0.0, 30.0, 60.0, 300.0])),
        forecast_min_history_s=draw(st.sampled_from([0.0, 1800.0])),
    )


def series(draw: st.DrawFn, n: int) -> np.ndarray:
    kind = draw(st.sampled_from(["empty", "constant", "random"]))
    if kind == "empty":
        return np.empty(0)
    if kind == "constant":
        return np.full(n, draw(weird))
    return np.array(draw(st.lists(weird, min_size=n, max_size=n)))


@st.composite
def observations(draw: st.DrawFn, with_overrides: bool = True) -> Observations:
    n = draw(st.integers(1, 30))
    current = draw(st.integers(0, 60))
    overrides: tuple[OverrideValue, ...] = ()
    if with_overrides and draw(st.booleans()):
        kind = draw(st.sampled_from(list(OverrideKind)))
        value = draw(st.integers(0, 80)) if kind in (OverrideKind.PIN, OverrideKind.FLOOR) else None
        start = NOW + draw(st.floats(-1000, 100))
        overrides = (OverrideValue(kind, start, start + draw(st.floats(1, 2000)), value),)
    return Observations(
        current_replicas=current,
        ready_replicas=draw(st.integers(0, current)),
        rps=series(draw, n),
        cpu_percent=series(draw, n),
        memory_percent=series(draw, n),
        latency_p95_ms=series(draw, n),
        queue_length=series(draw, n),
        last_sample_ts=draw(st.none() | st.floats(NOW - 500, NOW)),
        replica_startup_s=draw(st.none() | st.floats(0, 600) | st.just(float("nan"))),
        overrides=overrides,
    )


@st.composite
def forecasts(draw: st.DrawFn) -> ForecastInput | None:
    if draw(st.booleans()):
        return None
    n = draw(st.integers(0, 100))
    created = NOW - draw(st.floats(-100, 5000))
    ts = np.asarray(created + 60.0 * np.arange(n), dtype=np.float64)
    return ForecastInput(
        created_at=created,
        target_ts=ts,
        upper=np.array(draw(st.lists(weird, min_size=n, max_size=n))),
        step_s=60.0,
        history_s=draw(st.none() | st.floats(0, 86400)),
    )


@given(policies(), observations(), forecasts(), st.integers(0, 60))
@settings(max_examples=400, deadline=None)
def test_the_count_never_leaves_the_bounds(
    policy: ScalingPolicy, obs: Observations, forecast: ForecastInput | None, previous: int
) -> None:
    state = DecisionState(recommendations=((NOW - 10, previous),))
    d = decide(policy, obs, forecast, state, NOW)
    assert policy.min_replicas <= d.desired <= policy.max_replicas
    assert d.reasons and all(str(r) for r in d.reasons)


@given(policies(), observations(with_overrides=False), forecasts())
@settings(max_examples=300, deadline=None)
def test_no_fresh_metrics_and_no_usable_forecast_keeps_the_current_count(
    policy: ScalingPolicy, obs: Observations, forecast: ForecastInput | None
) -> None:
    stale = Observations(**{**obs.__dict__, "last_sample_ts": None})
    d = decide(policy, stale, forecast, DecisionState(), NOW)
    if d.predictive is None:
        expected = obs.current_replicas
        if policy.budget_replica_hours_per_hour is not None:
            expected = min(expected, max(1, int(policy.budget_replica_hours_per_hour + 1e-9)))
        assert d.desired == min(max(expected, policy.min_replicas), policy.max_replicas)


@given(policies(), observations(with_overrides=False), st.floats(0, 1e5))
@settings(max_examples=300, deadline=None)
def test_an_absurd_forecast_changes_nothing(policy: ScalingPolicy, obs: Observations, peak: float) -> None:
    reference = max(policy.planned_rps_per_replica, peak)
    finite = obs.rps[np.isfinite(obs.rps)]
    if finite.size:
        reference = max(reference, float(finite.max()))
    ts = np.asarray(NOW + 60.0 * np.arange(-1, 200), dtype=np.float64)
    absurd = ForecastInput(NOW, ts, np.full(ts.size, 1000 * reference + 1), 60.0, history_peak_rps=peak)
    with_absurd = decide(policy, obs, absurd, DecisionState(), NOW)
    without = decide(policy, obs, None, DecisionState(), NOW)
    assert with_absurd.desired == without.desired and with_absurd.predictive is None


@given(policies(), observations(with_overrides=False), forecasts(), st.integers(0, 80))
@settings(max_examples=300, deadline=None)
def test_a_pin_always_wins_within_bounds(
    policy: ScalingPolicy, obs: Observations, forecast: ForecastInput | None, pin: int
) -> None:
    pinned = Observations(
        **{**obs.__dict__, "overrides": (OverrideValue(OverrideKind.PIN, NOW - 1, NOW + 1, pin),)}
    )
    d = decide(policy, pinned, forecast, DecisionState(), NOW)
    assert d.desired == min(max(pin, policy.min_replicas), policy.max_replicas)


@given(policies(), observations(with_overrides=False), forecasts())
@settings(max_examples=300, deadline=None)
def test_a_freeze_keeps_the_current_count_within_bounds(
    policy: ScalingPolicy, obs: Observations, forecast: ForecastInput | None
) -> None:
    frozen = Observations(
        **{**obs.__dict__, "overrides": (OverrideValue(OverrideKind.FREEZE, NOW - 1, NOW + 1),)}
    )
    d = decide(policy, frozen, forecast, DecisionState(), NOW)
    assert d.desired == min(max(obs.current_replicas, policy.min_replicas), policy.max_replicas)


@given(policies(), observations(), forecasts())
@settings(max_examples=200, deadline=None)
def test_decide_is_deterministic(
    policy: ScalingPolicy, obs: Observations, forecast: ForecastInput | None
) -> None:
    a = decide(policy, obs, forecast, DecisionState(), NOW)
    b = decide(policy, obs, forecast, DecisionState(), NOW)
    assert (a.desired, a.source, a.reason_texts, a.new_state) == (
        b.desired,
        b.source,
        b.reason_texts,
        b.new_state,
    )


@given(policies(), observations(with_overrides=False), forecasts())
@settings(max_examples=200, deadline=None)
def test_scale_down_never_beats_a_recent_higher_recommendation(
    policy: ScalingPolicy, obs: Observations, forecast: ForecastInput | None
) -> None:
    if policy.scale_down_stabilisation_s == 0 or policy.max_step_down is not None:
        return
    held = min(obs.current_replicas, policy.max_replicas)
    state = DecisionState(recommendations=((NOW - 1, held),))
    d = decide(policy, obs, forecast, state, NOW)
    if d.predictive is not None and policy.forecast_scale_down_stabilisation_s < 1:
        return  # a usable forecast with a window shorter than the recommendation's age may scale down
    assert d.desired >= min(max(held, policy.min_replicas), policy.max_replicas) or (
        policy.budget_replica_hours_per_hour is not None
    )


@given(policies(), observations(with_overrides=False), forecasts(), st.floats(1, 3000))
@settings(max_examples=200, deadline=None)
def test_with_a_forecast_scale_down_never_beats_a_recommendation_inside_its_window(
    policy: ScalingPolicy, obs: Observations, forecast: ForecastInput | None, age_s: float
) -> None:
    if policy.max_step_down is not None:
        return
    held = min(obs.current_replicas, policy.max_replicas)
    state = DecisionState(recommendations=((NOW - age_s, held),))
    d = decide(policy, obs, forecast, state, NOW)
    window = policy.scale_down_stabilisation_s
    if d.predictive is not None:
        window = min(window, policy.forecast_scale_down_stabilisation_s)
    if age_s < window and policy.budget_replica_hours_per_hour is None:
        assert d.desired >= min(max(held, policy.min_replicas), policy.max_replicas)
