"""``decide()``: the pure scaling decision shared by the live controller loop and the trace simulator.

No I/O, no clock, no database: everything comes in as arguments, the memory between calls is the explicit
``DecisionState`` passed in and returned. The steps and their order (docs/decision.md):

1. active overrides at ``now`` (expired ones drop out by themselves);
2. lead time = measured replica startup (or the default) + margin;
3. predictive: replicas for the upper forecast band over [now, now + lead + horizon]; a missing, stale, NaN,
   negative or absurd forecast, or a reactive-only override, leaves it out with a reason;
3b. utilisation: how close to capacity the band is planned, from the forecast's own measured error (its
   calibrated band): tight bands plan hotter than ``forecast_utilisation``, up to ``forecast_utilisation_max``;
4. reactive: HPA ratio form on load / CPU / memory / p95 latency / queue, with Knative's panic mode; while a usable
   forecast plans hot, the load and CPU thresholds are its planned utilisation (they catch a wrong forecast);
5. combine: the larger of predictive and reactive (reactive alone, with its hold band, without a forecast);
   no fresh metrics and no forecast keeps the current count; while the metrics cover less than half the stable
   window (warm-up), no scale-down;
6. scale-down stabilisation: the highest recommendation of the window wins (and no scale-down in panic);
7. max step up / down per decision;
8. cost budget cap;
9. overrides: floor, pin, freeze;
10. bounds: [min_replicas, max_replicas], always last;
11. dry-run override: the decision is logged, not acted on.
"""

from __future__ import annotations

from controller import steps
from controller.decision_values import Decision, DecisionState, ForecastInput, Observations, Reason
from controller.overrides import OverrideKind, active_overrides
from controller.policy import ScalingPolicy

__all__ = ["Decision", "DecisionState", "ForecastInput", "Observations", "Reason", "decide"]


def decide(
    policy: ScalingPolicy,
    observations: Observations,
    forecast: ForecastInput | None,
    state: DecisionState,
    now: float,
) -> Decision:
    """The replica count for one deployment at ``now`` (epoch seconds), with a reason for every step's effect.

    ``observations.current_replicas`` is the count asked for now; ``state`` is the previous call's ``new_state``
    (``DecisionState()`` at first). The result never leaves [policy.min_replicas, policy.max_replicas].
    """
    current = max(0, observations.current_replicas)
    reasons: list[Reason] = []

    capacity, capacity_reason, probe = steps.capacity_in_use(policy, observations.learned_capacity, state, now)
    if policy.capacity_mode == "learned":  # a configured capacity is in the policy: no need to repeat it
        reasons.append(capacity_reason)
    if capacity != policy.replica_capacity_rps:  # every later step plans with the capacity in use
        policy = policy.model_copy(update={"replica_capacity_rps": capacity})

    active = active_overrides(observations.overrides, now)
    kinds = {o.kind for o in active}
    fresh = steps.metrics_fresh(policy, observations, now)

    lead_s, lead_reason = steps.lead_time_s(policy, observations)
    reasons.append(lead_reason)

    pred = steps.predictive(
        policy, observations, forecast, now, lead_s, OverrideKind.REACTIVE_ONLY in kinds, fresh
    )
    hot: float | None = None
    if pred.utilisation is not None and pred.utilisation.band_width is not None:  # a band to measure
        reasons.append(pred.utilisation.reason)
        hot = pred.utilisation.planned if pred.utilisation.hot else None
    reasons.append(pred.reason)
    react = steps.reactive(policy, observations, state, now, fresh, hot)
    reasons.append(react.reason)

    if pred.replicas is not None:
        if react.needed > pred.replicas:
            count, source = react.needed, "panic" if react.panic else "reactive"
            reasons.append(
                Reason("combine", f"reactive {react.needed} > predictive {pred.replicas}", after=count)
            )
        else:
            count, source = pred.replicas, "predictive"
            reasons.append(
                Reason("combine", f"predictive {pred.replicas} >= reactive {react.needed}", after=count)
            )
    elif fresh:
        count, source = react.alone, "panic" if react.panic else "reactive"
        reasons.append(Reason("combine", f"reactive alone -> {count}", after=count))
    else:
        count, source = current, "hold"
        reasons.append(
            Reason("combine", f"no forecast and no fresh metrics: keep the current {current}", after=count)
        )
    recommendation = count

    def record(step: str, new: int, message: str) -> None:
        nonlocal count, source
        if new != count:
            reasons.append(Reason(step, message, count, new))
            count, source = new, step

    warm_up = count < current and fresh and steps.warming_up(policy, observations)
    if warm_up:
        record(
            "warm-up",
            current,
            f"metrics cover only {steps.metrics_span_s(observations)} s of the "
            f"{policy.stable_window_s:.0f} s window: no scale-down yet, keep {current}",
        )

    forecast_used = pred.replicas is not None
    stabilised, history = steps.stabilise(policy, state, now, current, recommendation, forecast_used)
    window_s = (
        min(policy.scale_down_stabilisation_s, policy.forecast_scale_down_stabilisation_s)
        if forecast_used
        else policy.scale_down_stabilisation_s
    )
    if not warm_up:
        record(
            "stabilised",
            stabilised,
            f"held {stabilised} for the {window_s:.0f} s scale-down window"
            f"{' (forecast in use)' if forecast_used else ''} (recommended {recommendation})",
        )
    if react.panic and count < current:
        record("panic", current, f"no scale-down while panicking: keep {current}")

    limited = steps.step_limits(policy, current, count)
    record(
        "step-limit",
        limited,
        f"at most +{policy.max_step_up} / -{policy.max_step_down} per decision -> {limited}",
    )

    cap = steps.budget_cap(policy)
    if cap is not None and count > cap:
        record("budget", cap, f"cost budget allows {cap} replicas")

    overridden, override_reasons = steps.apply_overrides(active, current, count)
    if override_reasons:
        reasons.extend(override_reasons)
        count, source = overridden, override_reasons[-1].step

    bounded = min(max(count, policy.min_replicas), policy.max_replicas)
    if bounded != count:
        which = "max" if bounded < count else "min"
        record("bounds", bounded, f"clamped to {which} {bounded}")

    act = OverrideKind.DRY_RUN not in kinds
    if not act:
        reasons.append(Reason("dry-run", f"override: decided {count}, not acted on"))

    new_state = DecisionState(
        recommendations=history,
        panic_triggered_at=react.panic_triggered_at if react.panic else None,
        panic_peak=react.panic_peak if react.panic else 0,
        last_scale_ts=now if count != current else state.last_scale_ts,
        capacity_probe=probe,
    )
    return Decision(
        desired=count,
        reasons=reasons,
        new_state=new_state,
        source=source,
        act=act,
        predictive=pred.replicas,
        reactive=react.needed,
        forecast_upper_rps=pred.upper_rps,
        lead_time_s=lead_s,
        planned_utilisation=pred.utilisation.planned if pred.utilisation is not None else None,
        capacity_rps=capacity,
    )
