"""The named steps of ``decide()``: small pure functions, each returning a count and the reason for it.

The order in which ``decide()`` chains them is written down in docs/decision.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from controller.capacity import LearnedCapacity
from controller.decision_values import DecisionState, FloatArray, ForecastInput, Observations, Reason
from controller.overrides import OverrideKind, OverrideValue
from controller.policy import ScalingPolicy

_EPS = 1e-9


def ceil_replicas(x: float) -> int:
    """Replicas needed for a fractional need; a hair above an integer (float noise) does not add one."""
    return max(0, math.ceil(x - _EPS))


def window_mean(values: FloatArray, seconds: float) -> float | None:
    """Mean of the last ``seconds`` per-second values, ignoring NaN; None when nothing was measured."""
    n = max(1, round(seconds))
    tail = values[-n:]
    if tail.size == 0:
        return None
    total = float(tail.sum())
    if math.isfinite(total):  # fast path: nothing missing (the simulator calls this millions of times)
        return total / tail.size
    finite = tail[np.isfinite(tail)]
    return float(finite.mean()) if finite.size else None


def metrics_fresh(policy: ScalingPolicy, obs: Observations, now: float) -> bool:
    """True when the newest sample is recent enough to act on."""
    return obs.last_sample_ts is not None and now - obs.last_sample_ts <= policy.max_metrics_age_s


@dataclass(frozen=True)
class LeadTime:
    """How far ahead capacity must be asked for: replica startup plus the policy's margin."""

    lead_s: float
    startup_s: float
    measured: bool  # False: the policy's default startup, nothing measured yet

    @property
    def reason(self) -> Reason:
        origin = "measured startup" if self.measured else "default startup (not measured yet)"
        margin = self.lead_s - self.startup_s
        return Reason("lead-time", f"{origin} {self.startup_s:.0f} s + margin {margin:.0f} s = {self.lead_s:.0f} s")


PROBE_REACH = 2.0  # a probe stays within this many times the lower bound of the learned capacity


def capacity_in_use(
    policy: ScalingPolicy, learned: LearnedCapacity | None, state: DecisionState, now: float
) -> tuple[float, Reason, tuple[float, float] | None]:
    """The per-replica capacity a decision plans with, its reason and the probe to remember.

    Configured mode: the policy's. Learned mode: the estimate once it is bracketed and confident (a knee below the
    starting value at once: too high a start under-provisions). While only a lower bound is known, the capacity
    *probes* upward from the starting value: it rises by ``capacity_probe_step`` every ``capacity_probe_interval_s``
    but never past ``PROBE_REACH`` times the bound (loads run at about two thirds of the capacity in use, so the
    bound, the highest load served well, trails the probe; a reach much below 2 stalls it): the loads rise until
    the knee shows (the reactive path catches the seconds past it), and the probe comes back down when bad seconds
    lower the bound. It never falls below the starting value for want of evidence, and never stays above the
    *strain*, the lowest load at which a quarter of the seconds were bad: from there the loads only buy violations
    (the capacity lies a little above it, but the knee takes many more bad seconds to show).
    """
    start = policy.replica_capacity_rps
    if policy.capacity_mode == "configured":
        return start, Reason("capacity", f"configured {start:g} rps per replica"), None
    if learned is None:
        return start, Reason("capacity", f"learned: no evidence yet, starting value {start:g} rps per replica"), None
    estimate, strain = learned.rps_per_replica, learned.strained_rps
    if learned.bracketed:
        if learned.confidence >= policy.capacity_min_confidence or estimate < start:
            return estimate, Reason("capacity", f"learned {learned.describe()}"), None
        if strain is not None and strain < start:
            return strain, Reason("capacity", f"learned {learned.describe()}: the strain, below the start"), None
        message = (
            f"learned {learned.describe()}, below confidence {policy.capacity_min_confidence:g}: starting value "
            f"{start:g} rps"
        )
        return start, Reason("capacity", message), None
    reach = max(start, PROBE_REACH * estimate)
    probed, since = state.capacity_probe or (start, now)
    if now - since >= policy.capacity_probe_interval_s:
        probed, since = probed * (1 + policy.capacity_probe_step), now
    probed = min(probed, reach)
    if strain is not None and strain < probed:
        return strain, Reason(
            "capacity", f"learned {learned.describe()}: held at the strain (the probe stops where seconds go bad)"
        ), (strain, since)
    return probed, Reason(
        "capacity",
        f"learned {learned.describe()}: probing {probed:.1f} rps per replica until the knee shows (starting value "
        f"{start:g}, at most {reach:.1f}: {PROBE_REACH:g}x the bound)",
    ), (probed, since)


def lead_time(policy: ScalingPolicy, measured_startup_s: float | None) -> LeadTime:
    """The one definition of the lead time (decide(), the forecast plan and the simulator use it): the measured
    replica startup, or the policy's default until one is measured, plus ``lead_time_margin_s``."""
    if measured_startup_s is not None and math.isfinite(measured_startup_s) and measured_startup_s >= 0:
        return LeadTime(measured_startup_s + policy.lead_time_margin_s, measured_startup_s, True)
    startup = policy.default_replica_startup_s
    return LeadTime(startup + policy.lead_time_margin_s, startup, False)


def lead_time_s(policy: ScalingPolicy, obs: Observations) -> tuple[float, Reason]:
    """The lead time for these observations (their measured startup) and its reason."""
    lead = lead_time(policy, obs.replica_startup_s)
    return lead.lead_s, lead.reason


@dataclass(frozen=True)
class Utilisation:
    """The fraction of a replica's capacity the upper forecast band is planned at."""

    planned: float
    hot: bool  # planned above the policy's forecast_utilisation: the forecast has earned it
    band_width: float | None  # (upper - point) / upper where the band decides; None: no point forecast
    reason: Reason


def planned_utilisation(policy: ScalingPolicy, upper_rps: float, point_rps: float | None) -> Utilisation:
    """How close to capacity the upper band may be planned, from the forecast's own measured error.

    The calibrated band is the forecast's recent error: its upper edge is exceeded 10 % of the time. Capacity is
    planned for ``forecast_tail_bands`` band widths beyond it (1.4: a normal error's 99.9 % quantile when the band
    is its 90 %), at ``forecast_utilisation_max`` of capacity: ``upper x (1 + tail x width) / max``, i.e. the
    upper band at ``max / (1 + tail x width)`` of capacity. A tight band plans hot, a wide one cool, never cooler
    than ``forecast_utilisation`` (the plan for a forecast whose error is not known, or not small).
    """
    floor, ceiling = policy.forecast_utilisation, policy.forecast_utilisation_max
    if point_rps is None or not math.isfinite(point_rps) or upper_rps <= 0:
        why = "no point forecast to measure the band by" if point_rps is None else "no load forecast"
        return Utilisation(floor, False, None, Reason("utilisation", f"{why}: plan the upper band at {floor:g}"))
    width = max(0.0, upper_rps - point_rps) / upper_rps
    planned = min(ceiling, max(floor, ceiling / (1.0 + policy.forecast_tail_bands * width)))
    hot = planned > floor + _EPS
    verdict = "hotter than" if hot else "no hotter than"
    return Utilisation(
        planned,
        hot,
        width,
        Reason(
            "utilisation",
            f"band {100 * width:.1f} % of the upper forecast, headroom for {policy.forecast_tail_bands:g} band "
            f"widths more at {ceiling:g} of capacity -> upper band planned at {planned:.3g} ({verdict} "
            f"{floor:g})",
        ),
    )


@dataclass(frozen=True)
class Predictive:
    replicas: int | None  # None: forecast not used
    upper_rps: float | None
    reason: Reason
    utilisation: Utilisation | None = None  # how hot the band was planned, when used


def predictive(
    policy: ScalingPolicy,
    obs: Observations,
    forecast: ForecastInput | None,
    now: float,
    lead_s: float,
    reactive_only: bool,
    fresh: bool,
) -> Predictive:
    """Replicas for the upper forecast band over ``[now, now + lead time + horizon]``, or None with the reason."""

    def ignored(why: str) -> Predictive:
        return Predictive(None, None, Reason("predictive", f"forecast ignored: {why}"))

    if reactive_only:
        return ignored("reactive-only override")
    if forecast is None:
        return ignored("no forecast")
    age = now - forecast.created_at
    if age > policy.forecast_max_age_s:
        return ignored(f"stale, made {age:.0f} s ago (max {policy.forecast_max_age_s:.0f} s)")
    if age < -policy.forecast_max_age_s:
        return ignored(f"made {-age:.0f} s in the future")
    if forecast.history_s is not None and forecast.history_s < policy.forecast_min_history_s:
        return ignored(
            f"fitted on only {forecast.history_s:.0f} s of history (min {policy.forecast_min_history_s:.0f} s)"
        )
    window_end = now + lead_s + policy.horizon_s
    ts = forecast.target_ts
    if ts.size == 0 or ts[-1] + forecast.step_s < window_end - _EPS:
        return ignored(f"does not cover the window up to now + {lead_s + policy.horizon_s:.0f} s")
    inside = (ts + forecast.step_s > now) & (ts <= window_end)
    selected = forecast.upper[inside]
    if selected.size == 0:
        return ignored("no forecast interval inside the window")
    if not np.all(np.isfinite(selected)):
        return ignored("NaN or infinite values in the window")
    if np.any(selected < 0):
        return ignored("negative values in the window")
    upper = float(selected.max())
    reference = policy.planned_rps_per_replica
    if forecast.history_peak_rps is not None and math.isfinite(forecast.history_peak_rps):
        reference = max(reference, forecast.history_peak_rps)
    if fresh and obs.rps.size:
        finite = obs.rps[np.isfinite(obs.rps)]
        if finite.size:
            reference = max(reference, float(finite.max()))
    if upper > policy.forecast_sanity_factor * reference:
        return ignored(
            f"absurd: upper {upper:.0f} rps is over {policy.forecast_sanity_factor:g}x the reference peak "
            f"{reference:.0f} rps"
        )
    deciding = int(np.argmax(selected))
    point = float(forecast.point[inside][deciding]) if forecast.point is not None else None
    utilisation = planned_utilisation(policy, upper, point)
    replicas = ceil_replicas(upper / (policy.replica_capacity_rps * utilisation.planned))
    return Predictive(
        replicas,
        upper,
        Reason(
            "predictive",
            f"upper forecast {upper:.0f} rps over the next {lead_s + policy.horizon_s:.0f} s / "
            f"({policy.replica_capacity_rps:g} rps x {utilisation.planned:.3g}) -> {replicas}",
            after=replicas,
        ),
        utilisation,
    )


@dataclass(frozen=True)
class Reactive:
    needed: int  # replicas the current metrics call for (ratio form); the vote next to the predictive one
    alone: int  # what the reactive path decides on its own (holds inside the thresholds' band)
    panic: bool
    panic_triggered_at: float | None
    panic_peak: int
    reason: Reason


def _ratio_replicas(base: int, ratio: float, tolerance: float) -> int:
    """HPA's ``ceil(current * observed / target)``, keeping ``base`` within the tolerance."""
    if abs(ratio - 1.0) <= tolerance:
        return base
    return ceil_replicas(base * ratio)


# Kubernetes HPA's default scale-up policy: at most max(100 %, 4 pods) more per period.
HPA_SCALE_UP_FACTOR = 2.0
HPA_SCALE_UP_PODS = 4


def load_need(policy: ScalingPolicy, obs: Observations) -> int | None:
    """Replicas the measured load needs at the target utilisation: the recent (panic-window) rate plus draining
    the queue within the stable window; None when the rate is not measured."""
    rps = window_mean(obs.rps, policy.panic_window_s) if obs.rps.size else None
    if rps is None:
        return None
    queue = window_mean(obs.queue_length, 1) if obs.queue_length.size else None
    backlog_rps = (queue or 0.0) / policy.stable_window_s
    return ceil_replicas((rps + backlog_rps) / policy.planned_rps_per_replica)


def _trouble_vote_limit(policy: ScalingPolicy, obs: Observations, base: int) -> int:
    """The most a latency or queue vote may ask: the measured load's need or HPA's scale-up rate, if more."""
    rate = max(math.ceil(HPA_SCALE_UP_FACTOR * base), base + HPA_SCALE_UP_PODS)
    need = load_need(policy, obs)
    return rate if need is None else max(rate, need)


def reactive(
    policy: ScalingPolicy,
    obs: Observations,
    state: DecisionState,
    now: float,
    fresh: bool,
    hot_utilisation: float | None = None,
) -> Reactive:
    """Load / CPU / memory / latency / queue thresholds in HPA's ratio form, with Knative's panic mode for bursts.

    ``hot_utilisation``: a usable forecast plans its upper band hotter than the load and CPU thresholds (see
    ``planned_utilisation``); they then vote up only when the load exceeds that plan (beyond the tolerance), i.e.
    when the forecast is wrong. Panic keeps the policy's own thresholds.
    """
    current = obs.current_replicas
    if not fresh:
        return Reactive(
            current,
            current,
            False,
            None,
            0,
            Reason("reactive", f"no fresh metrics: keep the current {current}"),
        )
    base = obs.ready_replicas if obs.ready_replicas > 0 else current
    # Request load as a utilisation of the replicas' capacity (Knative's rps metric): it sees overload even where
    # replicas wait rather than compute (I/O-bound models, or a GPU the CPU metric does not show).
    with np.errstate(divide="ignore", invalid="ignore"):
        load_percent = obs.rps / (base * policy.replica_capacity_rps) * 100.0 if base > 0 else np.empty(0)
    hot_percent = 100.0 * hot_utilisation if hot_utilisation is not None else 0.0
    load_up, cpu_up = policy.target_utilisation * 100.0, policy.cpu_scale_up_percent
    signals = (  # name, values, up threshold, panic threshold, proportional to the replica count
        ("load", load_percent, max(load_up, hot_percent), load_up, True),
        ("cpu", obs.cpu_percent, max(cpu_up, hot_percent), cpu_up, True),
        ("memory", obs.memory_percent, policy.memory_scale_up_percent, policy.memory_scale_up_percent, True),
        ("p95 latency", obs.latency_p95_ms, policy.latency_p95_scale_up_ms, policy.latency_p95_scale_up_ms, False),
        ("queue", obs.queue_length, policy.queue_length_scale_up, policy.queue_length_scale_up, False),
    )
    votes: list[tuple[int, str]] = []
    panic_votes: list[int] = []
    measured_any = False
    trouble_limit = _trouble_vote_limit(policy, obs, base)
    for name, values, up, panic_up, proportional in signals:
        stable = window_mean(values, policy.stable_window_s) if values.size else None
        if stable is None:
            continue
        measured_any = True
        panic_mean = window_mean(values, policy.panic_window_s)
        if proportional:
            ratio = stable / up
            if ratio > 1.0 + policy.tolerance:
                votes.append(
                    (_ratio_replicas(base, ratio, policy.tolerance), f"{name} {stable:.0f} > {up:g}")
                )
            else:
                # Below the up threshold a proportional metric says how many replicas the load needs (never more).
                votes.append(
                    (min(base, _ratio_replicas(base, ratio, policy.tolerance)), f"{name} {stable:.0f}")
                )
            if panic_mean is not None and base > 0:
                panic_votes.append(ceil_replicas(base * panic_mean / panic_up))
            continue
        # Latency and queue are not proportional to the replica count, and a minute-old reading says nothing
        # about replicas added since: they vote on the recent (panic-window) value, in ratio form, limited to
        # what the measured load needs or HPA's scale-up rate, whichever is more.
        recent = panic_mean if panic_mean is not None else stable
        ratio = recent / up
        if ratio > 1.0 + policy.tolerance:
            raw = _ratio_replicas(base, ratio, policy.tolerance)
            vote = min(raw, trouble_limit)
            limited = f" (ratio asks {raw}, limited to {vote})" if vote < raw else ""
            votes.append((vote, f"{name} {recent:.0f} > {up:g}{limited}"))
            if base > 0:
                panic_votes.append(vote)
    # Scale-from-zero: ratios of nothing are nothing, but arriving requests need a replica.
    recent_rps = window_mean(obs.rps, policy.stable_window_s) if obs.rps.size else None
    if base == 0 and recent_rps is not None and recent_rps > 0:
        votes.append((1, f"{recent_rps:.1f} rps with no replica"))
    if not measured_any and not votes:
        return Reactive(
            current,
            current,
            False,
            None,
            0,
            Reason("reactive", f"no metric measured: keep the current {current}"),
        )
    needed = max((v for v, _ in votes), default=0)
    up_votes = [v for v, _ in votes if v > base]
    # The band between the down and up thresholds holds the count when deciding alone (hysteresis).
    all_below_down = all(
        (mean := window_mean(values, policy.stable_window_s)) is None or mean < down
        for values, down in (
            (obs.cpu_percent, policy.cpu_scale_down_percent),
            (obs.memory_percent, policy.memory_scale_down_percent),
        )
        if values.size
    )
    if up_votes:
        alone = max(up_votes)
    elif all_below_down and (obs.cpu_percent.size or obs.memory_percent.size):
        alone = needed
    else:
        alone = current

    panic_desired = max(panic_votes, default=0)
    triggered_at = state.panic_triggered_at
    if base > 0 and panic_desired >= policy.panic_threshold * base:
        triggered_at = now
    panic = triggered_at is not None and now - triggered_at < policy.stable_window_s
    if panic:
        peak = max(state.panic_peak if state.panic_triggered_at is not None else 0, panic_desired, current)
        needed = alone = max(needed, peak)
        why = ", ".join(w for _, w in votes) or "no signal"
        reason = Reason(
            "panic",
            f"burst: short window asks {panic_desired} for {base} ready (>= {policy.panic_threshold:g}x); "
            f"no scale-down until {policy.stable_window_s:.0f} s calm; {why} -> {needed}",
            after=needed,
        )
        return Reactive(needed, alone, True, triggered_at, peak, reason)
    why = ", ".join(w for _, w in votes)
    band = " (inside the thresholds' band: hold when alone)" if alone == current and not up_votes else ""
    if hot_percent > min(load_up, cpu_up):
        band += f" (load and cpu thresholds at the forecast's planned {hot_percent:.0f} %)"
    return Reactive(
        needed,
        alone,
        False,
        None,
        0,
        Reason("reactive", f"{why} on {base} ready -> {needed}{band}", after=needed),
    )


def metrics_span_s(obs: Observations) -> int:
    """Seconds from the oldest measured (finite) sample of any metric window to its end: how much the averages
    have seen."""
    span = 0
    for values in (obs.rps, obs.cpu_percent, obs.memory_percent, obs.latency_p95_ms, obs.queue_length):
        finite = np.flatnonzero(np.isfinite(values))
        if finite.size:
            span = max(span, int(values.size - finite[0]))
    return span


def warming_up(policy: ScalingPolicy, obs: Observations) -> bool:
    """True while the metrics cover less than half the stable window (a new deployment, the first seconds of a
    replay): their means are too young to justify removing replicas (Knative keeps the current scale then)."""
    return metrics_span_s(obs) < policy.stable_window_s / 2


def stabilise(
    policy: ScalingPolicy,
    state: DecisionState,
    now: float,
    current: int,
    recommendation: int,
    forecast_used: bool = False,
) -> tuple[int, tuple[tuple[float, int], ...]]:
    """HPA's scale-down stabilisation: scale down only to the highest recommendation of the window.

    While a usable forecast decides, the window is ``forecast_scale_down_stabilisation_s``: the upper band over
    the lead window already holds what the next minutes need, so the long window would only pay for capacity the
    forecast says is idle. The history keeps the long window either way (a forecast can turn unusable).
    """
    window = policy.scale_down_stabilisation_s
    kept = tuple((ts, r) for ts, r in state.recommendations if ts > now - window)
    history = (*kept, (now, recommendation))
    if recommendation > current:
        return recommendation, history
    if forecast_used:
        window = min(window, policy.forecast_scale_down_stabilisation_s)
    held = max(r for ts, r in history if ts > now - window or ts == now)
    return min(current, held), history


def step_limits(policy: ScalingPolicy, current: int, desired: int) -> int:
    """At most ``max_step_up`` added and ``max_step_down`` removed per decision."""
    if policy.max_step_up is not None and desired > current + policy.max_step_up:
        return current + policy.max_step_up
    if policy.max_step_down is not None and desired < current - policy.max_step_down:
        return current - policy.max_step_down
    return desired


def budget_cap(policy: ScalingPolicy) -> int | None:
    """The replica count the cost budget allows, or None without a budget; never below one replica, so that a
    budget alone does not scale a service to zero."""
    caps: list[int] = []
    if policy.budget_replica_hours_per_hour is not None:
        caps.append(math.floor(policy.budget_replica_hours_per_hour + _EPS))
    if policy.budget_money_per_hour is not None and policy.price_per_replica_hour > 0:
        caps.append(math.floor(policy.budget_money_per_hour / policy.price_per_replica_hour + _EPS))
    return max(1, min(caps)) if caps else None


def _until(ends_at: float) -> str:
    """An override's end for a reason text: UTC time of day (date too when it is not today's), or 'further notice'."""
    if not math.isfinite(ends_at):
        return "further notice"
    return datetime.fromtimestamp(ends_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def apply_overrides(
    active: tuple[OverrideValue, ...], current: int, desired: int
) -> tuple[int, list[Reason]]:
    """Floor, then pin, then freeze (the strongest last). Reactive-only and dry-run act elsewhere.

    A floor says so when it raises the count; a pin and a freeze always say so while active, even when the count
    already matches, so the decision log shows who is in charge (and when that ends)."""
    reasons: list[Reason] = []
    for override in active:
        if override.kind is OverrideKind.FLOOR and override.value is not None and desired < override.value:
            reasons.append(
                Reason("floor", f"override: at least {override.value} until {_until(override.ends_at)}",
                       desired, override.value)
            )  # fmt: skip
            desired = override.value
    for override in active:
        if override.kind is OverrideKind.PIN and override.value is not None:
            reasons.append(
                Reason("pin", f"override: exactly {override.value} until {_until(override.ends_at)}",
                       desired, override.value)
            )  # fmt: skip
            desired = override.value
    for override in active:
        if override.kind is OverrideKind.FREEZE:
            reasons.append(
                Reason("freeze", f"override: no changes until {_until(override.ends_at)}, keep {current}",
                       desired, current)
            )  # fmt: skip
            desired = current
    return desired, reasons
