"""What a run costs and how well it served: the figures compared across policies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.decision_values import FloatArray
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import PolicyRun


@dataclass(frozen=True)
class SurgeRule:
    """What counts as a surge, in seconds of the series: the smoothed rate rises by ``rise_fraction`` of its peak
    within ``rise_window_s``; surges closer than ``separation_s`` are one; leads are measured within ``lookback_s``
    either side. A time-compressed replay uses ``compressed(factor)`` so the rule keeps its meaning in trace time."""

    rise_fraction: float = 0.25
    rise_window_s: int = 600
    separation_s: int = 1800
    lookback_s: int = 3600
    smoothing_s: int = 60  # the rate is a trailing mean over this many seconds
    sample_step_s: int = 10  # rises are looked for every this many seconds (speed)

    def compressed(self, factor: float) -> SurgeRule:
        """The same rule for a series played ``factor`` times faster (every window at least one second)."""

        def scale(seconds: int) -> int:
            return max(1, round(seconds / factor))

        return SurgeRule(
            self.rise_fraction,
            scale(self.rise_window_s),
            scale(self.separation_s),
            scale(self.lookback_s),
            scale(self.smoothing_s),
            scale(self.sample_step_s),
        )


DEFAULT_SURGE_RULE = SurgeRule()


@dataclass(frozen=True)
class Surge:
    t: int  # second the rise ends (the smoothed rate reaches its level)
    level_rps: float  # the smoothed rate reached


@dataclass(frozen=True)
class PolicyResult:
    name: str
    cost_replica_hours: float
    cost: float
    slo_violation_s: int
    violation_share: float
    dropped: float
    mean_utilisation: float
    actions: int
    surge_lead_s: list[float | None]

    def as_json(self) -> dict[str, object]:
        return {
            "cost_replica_hours": round(self.cost_replica_hours, 4),
            "cost": round(self.cost, 4),
            "slo_violation_s": self.slo_violation_s,
            "violation_share": self.violation_share,
            "dropped": round(self.dropped, 1),
            "mean_utilisation": round(self.mean_utilisation, 4),
            "actions": self.actions,
            "surge_lead_s": self.surge_lead_s,
        }


def violating_seconds(run: PolicyRun, arrivals: FloatArray, cluster: ClusterModel) -> npt.NDArray[np.bool_]:
    """Boolean per second: p95 estimate over the SLO, requests dropped, or requests with no ready replica."""
    over = np.nan_to_num(run.p95_ms, nan=0.0) > cluster.slo_p95_ms * (1 + 1e-9)
    return over | (run.dropped > 0) | ((run.ready <= 0) & (arrivals > 0))


def trailing_means(arrivals: FloatArray, window_s: int = 60) -> FloatArray:
    """Trailing ``window_s`` mean rate at each second."""
    c = np.concatenate(([0.0], np.cumsum(arrivals)))
    idx = np.arange(1, len(arrivals) + 1)
    lo = np.maximum(idx - window_s, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def find_surges(arrivals: FloatArray, rule: SurgeRule = DEFAULT_SURGE_RULE) -> list[Surge]:
    """Sharp rises of the smoothed rate (see ``SurgeRule``), at most one per ``rule.separation_s``."""
    m = trailing_means(arrivals, rule.smoothing_s)
    if m.size <= rule.rise_window_s:
        return []
    peak = float(m.max())
    if peak <= 0:
        return []
    # trailing minimum over the rise window, sampled every ``sample_step_s`` for speed
    step = rule.sample_step_s
    sampled = m[::step]
    w = max(1, rule.rise_window_s // step)
    padded = np.concatenate((np.full(w, np.inf), sampled))
    windows = np.lib.stride_tricks.sliding_window_view(padded, w + 1)[: sampled.size]
    rise = sampled - windows.min(axis=1)
    candidates = np.flatnonzero(rise >= rule.rise_fraction * peak)
    surges: list[Surge] = []
    last = -rule.separation_s
    for k in candidates:
        t = int(k * step)
        if t - last < rule.separation_s:
            continue
        # the surge's level: the highest smoothed rate of the next rise window
        level = float(m[t : t + rule.rise_window_s].max())
        surges.append(Surge(t, level))
        last = t
    return surges


def surge_lead_s(
    ready: FloatArray, capacity_rps: float, surge: Surge, rule: SurgeRule = DEFAULT_SURGE_RULE
) -> float | None:
    """Seconds from the surge to when capacity covered its level: negative = ready before it arrived.

    Before: the start of the last stretch, within the lookback, during which capacity stayed >= the level up to
    the surge. After: the first second capacity reached the level. None: not within the lookback.
    """
    covered = ready * capacity_rps >= surge.level_rps
    t = surge.t
    if covered[t]:
        lo = max(0, t - rule.lookback_s)
        not_covered = np.flatnonzero(~covered[lo : t + 1])
        start = lo + (int(not_covered[-1]) + 1 if not_covered.size else 0)
        return float(start - t)
    after = np.flatnonzero(covered[t : t + rule.lookback_s])
    return float(after[0]) if after.size else None


@dataclass(frozen=True)
class ColdStarts:
    """Requests that arrived while no replica was ready (an activator held them) and what that added to their wait.

    A request arriving in second ``s`` with no replica ready waits until the first ready second ``s'``; it is
    counted as arriving mid-second, so its added wait is ``s' - s - 0.5`` s (to the trace's end if none follows).
    """

    requests: float
    wait_p50_s: float | None
    wait_p95_s: float | None
    wait_max_s: float | None


def cold_starts(ready: FloatArray, arrivals: FloatArray) -> ColdStarts:
    """The cold-started requests of a run and their added wait (request-weighted quantiles)."""
    cold = np.flatnonzero((ready <= 0) & (arrivals > 0))
    if cold.size == 0:
        return ColdStarts(0.0, None, None, None)
    ready_at = np.flatnonzero(ready > 0)
    k = np.searchsorted(ready_at, cold)
    served_at = np.where(k < ready_at.size, ready_at[np.minimum(k, ready_at.size - 1)], len(ready))
    waits = served_at - cold - 0.5
    weights = arrivals[cold]
    order = np.argsort(waits)
    waits, weights = waits[order], weights[order]
    cumulative = np.cumsum(weights) / weights.sum()

    def quantile(q: float) -> float:
        return float(waits[min(int(np.searchsorted(cumulative, q)), waits.size - 1)])

    return ColdStarts(float(weights.sum()), quantile(0.5), quantile(0.95), float(waits[-1]))


def summarise(
    run: PolicyRun, arrivals: FloatArray, cluster: ClusterModel, surges: list[Surge]
) -> PolicyResult:
    """The figures of one policy's run."""
    replica_hours = float(run.billed.sum()) / 3600.0
    violations = int(violating_seconds(run, arrivals, cluster).sum())
    billed_capacity = float(run.billed.sum()) * cluster.replica_capacity_rps
    utilisation = float(run.served.sum()) / billed_capacity if billed_capacity > 0 else 0.0
    return PolicyResult(
        name=run.name,
        cost_replica_hours=replica_hours,
        cost=replica_hours * cluster.price_per_replica_hour,
        slo_violation_s=violations,
        violation_share=violations / max(1, len(arrivals)),
        dropped=float(run.dropped.sum()),
        mean_utilisation=utilisation,
        actions=run.actions,
        surge_lead_s=[surge_lead_s(run.ready, cluster.replica_capacity_rps, s) for s in surges],
    )
