"""Scale to zero and back: the pure steps of ``decide()`` that take a deployment to zero replicas and wake it.

Three rules, each a named step with a reason (docs/decision.md, "Scale to zero"); all of them only with
``min_replicas: 0``:

- ``scale-to-zero``: no request for ``scale_to_zero_grace_s`` (Knative's 30 s), none held by the activator, and the
  forecast's upper band below ``scale_to_zero_forecast_rps`` over ``[now, now + lead time + horizon]`` -> 0.
- ``wake-up`` (predictive): at zero, when the forecast says traffic from time T, wake at T - lead time (the lead
  time is the measured startup + margin, so the replica is ready when traffic returns).
- ``activate`` (reactive): at zero, a request held by the activator or seen in the last panic window -> at least
  one replica at once; nothing (stabilisation, step limits) delays leaving zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from controller.decision_values import DecisionState, ForecastInput, Observations, Reason
from controller.policy import ScalingPolicy


def clock(ts: float) -> str:
    """A time for a reason text: UTC time of day to the second."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def idle_since(obs: Observations, state: DecisionState, fresh: bool) -> float | None:
    """The first second of the current stretch without traffic (epoch s), or None while there is traffic.

    A second with requests, or a missing (NaN) one, which may have had some, restarts the stretch after it; the
    missing seconds at the end of the window are not reported yet and say nothing. A request held by the activator
    is traffic now. Without fresh metrics nothing new is known: the
    remembered value stands.
    """
    if obs.held_requests > 0:
        return None
    if not fresh or obs.last_sample_ts is None or obs.rps.size == 0:
        return state.idle_since
    measured = np.flatnonzero(np.isfinite(obs.rps))
    if measured.size == 0:
        return state.idle_since
    rps = obs.rps[: int(measured[-1]) + 1]  # trailing missing seconds: not reported yet, nothing known
    first_ts = obs.last_sample_ts - (obs.rps.size - 1)  # start of the oldest second in the window
    busy = np.flatnonzero(~(rps <= 0))  # requests, or NaN (unknown)
    if busy.size:
        last_busy = int(busy[-1])
        if last_busy == rps.size - 1:
            return None  # the newest reported second had requests
        return first_ts + last_busy + 1
    return state.idle_since if state.idle_since is not None else first_ts


def traffic_from(
    policy: ScalingPolicy, forecast: ForecastInput | None, now: float, until: float | None = None
) -> tuple[float, float] | None:
    """The first time at or after ``now`` (up to ``until``) the forecast's upper band reaches
    ``scale_to_zero_forecast_rps``, with that band's value; None when it stays below."""
    if forecast is None or forecast.target_ts.size == 0:
        return None
    ts, upper = forecast.target_ts, forecast.upper
    inside = ts + forecast.step_s > now
    if until is not None:
        inside &= ts <= until
    hits = np.flatnonzero(inside & (upper >= policy.scale_to_zero_forecast_rps))
    if hits.size == 0:
        return None
    k = int(hits[0])
    return max(now, float(ts[k])), float(upper[k])


def recent_traffic(policy: ScalingPolicy, obs: Observations, fresh: bool) -> float | None:
    """Requests seen in the last panic window (per second), when any: what wakes a deployment at zero reactively."""
    if not fresh or obs.rps.size == 0:
        return None
    tail = obs.rps[-max(1, round(policy.panic_window_s)) :]
    tail = tail[np.isfinite(tail)]
    total = float(tail.sum()) if tail.size else 0.0
    return total / tail.size if total > 0 else None


@dataclass(frozen=True)
class ZeroStep:
    """What the scale-to-zero steps decide: a new count (None: no effect), its reason and what to remember."""

    count: int | None
    reason: Reason | None
    idle_since: float | None
    next_wake_at: float | None  # when a deployment at (or going to) zero plans to wake; None: not planned


def at_zero(
    policy: ScalingPolicy,
    obs: Observations,
    forecast: ForecastInput | None,
    forecast_usable: bool,
    planned: int,
    now: float,
    lead_s: float,
    idle: float | None,
    fresh: bool,
) -> ZeroStep:
    """A deployment at zero: activate on traffic, wake ahead of forecast traffic, or stay at zero.

    ``planned`` is the combined recommendation (predictive and reactive); leaving zero takes at least one replica,
    or what is planned if more. Staying at zero overrides a stale reactive vote (the stable window still holding
    requests from before zero) and a predictive vote for a band below the traffic threshold.
    """
    want = max(1, planned)
    if obs.held_requests > 0:
        return ZeroStep(
            want,
            Reason("activate", f"{obs.held_requests} requests held at zero -> {want} at once", 0, want),
            None,
            None,
        )
    rps = recent_traffic(policy, obs, fresh)
    if rps is not None:
        return ZeroStep(
            want,
            Reason("activate", f"{rps:.2g} rps arriving at zero -> {want} at once", 0, want),
            None,
            None,
        )
    coming = traffic_from(policy, forecast, now) if forecast_usable else None
    if coming is not None:
        start, upper = coming
        wake_at = start - lead_s
        if wake_at <= now:
            return ZeroStep(
                want,
                Reason(
                    "wake-up",
                    f"forecast {upper:.2g} rps from {clock(start)} -> wake {want} replica"
                    f"{'s' if want > 1 else ''} at {clock(wake_at)} (lead {lead_s:.0f} s)",
                    0,
                    want,
                ),
                idle,
                None,
            )
        return ZeroStep(
            0,
            Reason(
                "scale-to-zero",
                f"at zero: forecast {upper:.2g} rps from {clock(start)} -> wake at {clock(wake_at)}",
                planned,
                0,
            ),
            idle,
            wake_at,
        )
    why = "no usable forecast" if not forecast_usable else "no traffic forecast"
    return ZeroStep(
        0, Reason("scale-to-zero", f"at zero: no traffic and {why}: stay at 0", planned, 0), idle, None
    )


def to_zero(
    policy: ScalingPolicy,
    obs: Observations,
    forecast: ForecastInput | None,
    forecast_usable: bool,
    count: int,
    now: float,
    lead_s: float,
    idle: float | None,
    fresh: bool = True,
) -> ZeroStep:
    """Replicas running: go to zero after ``scale_to_zero_grace_s`` without traffic unless the forecast's upper
    band says traffic comes within the lead time and horizon, or requests are held. This is the only way to zero:
    when an earlier step asks for 0 (the reactive path on an empty window) and the rule does not hold, one stays."""
    window_s = lead_s + policy.horizon_s
    idle_s = now - idle if idle is not None else 0.0
    blocked: str | None = None
    if not fresh:
        blocked = "no fresh metrics"
    elif obs.held_requests > 0:
        blocked = f"{obs.held_requests} requests held"
    elif idle is None:
        blocked = "requests arriving"
    elif idle_s < policy.scale_to_zero_grace_s:
        blocked = f"idle only {idle_s:.0f} s (grace {policy.scale_to_zero_grace_s:.0f} s)"
    elif forecast_usable and (coming := traffic_from(policy, forecast, now, now + window_s)) is not None:
        blocked = f"forecast {coming[1]:.2g} rps from {clock(coming[0])}"
    if blocked is not None:
        if count > 0:
            return ZeroStep(None, None, idle, None)  # the other steps keep their replicas
        return ZeroStep(1, Reason("scale-to-zero", f"not to zero: {blocked} -> keep 1", 0, 1), idle, None)
    if forecast_usable:
        later = traffic_from(policy, forecast, now)
        wake_at = later[0] - lead_s if later is not None else None
        what = f"no traffic forecast for the next {window_s:.0f} s"
    else:
        wake_at = None
        what = "no usable forecast"
    wake = f", wake at {clock(wake_at)}" if wake_at is not None else ""
    return ZeroStep(
        0,
        Reason("scale-to-zero", f"idle {idle_s:.0f} s and {what} -> 0{wake}", count, 0),
        idle,
        wake_at,
    )
