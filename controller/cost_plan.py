"""The reserved-capacity plan: how many replicas to commit to, by the break-even rule (docs/cost.md).

A reserved replica costs ``price_reserved`` every hour; the same replica on demand costs ``price_on_demand`` only in
the hours it is needed. The k-th reserved replica pays off when demand needs at least k replicas in more than
``price_reserved / price_on_demand`` of the hours, so the plan reserves the highest such k. Pure: the demand comes in
as replicas needed per hour (from stored history, or a forecast), the prices from the policy's pools.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from controller.pools import CapacityPool

HOURS_PER_MONTH = 730.0  # 365 x 24 / 12


@dataclass(frozen=True)
class PlanOption:
    """One way to buy the capacity: ``reserved`` replicas committed, the rest on demand."""

    name: str
    reserved: int
    monthly_cost: float
    saving_vs_on_demand: float  # 1 - cost / on-demand-only cost
    saving_vs_peak: float  # 1 - cost / reserving for the peak


@dataclass(frozen=True)
class CostPlan:
    recommended_reserved: int
    break_even_share: float  # price_reserved / price_on_demand
    hours: float  # hours of demand the plan is based on
    peak_replicas: int
    share_at_recommended: float  # share of the time needing at least the recommended level
    options: list[PlanOption]

    def as_json(self) -> dict[str, object]:
        return {
            "recommended_reserved": self.recommended_reserved,
            "break_even_share": round(self.break_even_share, 4),
            "hours": round(self.hours, 3),
            "peak_replicas": self.peak_replicas,
            "share_at_recommended": round(self.share_at_recommended, 4),
            "options": [
                {
                    "name": o.name,
                    "reserved": o.reserved,
                    "monthly_cost": round(o.monthly_cost, 2),
                    "saving_vs_on_demand": round(o.saving_vs_on_demand, 4),
                    "saving_vs_peak": round(o.saving_vs_peak, 4),
                }
                for o in self.options
            ],
        }

    def table(self) -> str:
        """A Markdown table of the options, the recommendation first."""
        rows = [
            "| option | reserved replicas | expected monthly cost | saving vs on-demand only | saving vs reserving the peak |",
            "|---|---:|---:|---:|---:|",
        ]
        for o in self.options:
            rows.append(
                f"| {o.name} | {o.reserved} | {o.monthly_cost:.2f} | {100 * o.saving_vs_on_demand:.1f} % | "
                f"{100 * o.saving_vs_peak:.1f} % |"
            )
        return "\n".join(rows)


def replicas_needed(
    rps: npt.ArrayLike, planned_rps_per_replica: float, min_replicas: int = 0
) -> npt.NDArray[np.int64]:
    """Replicas each interval needs to carry its rate at the planned utilisation (NaN intervals are dropped)."""
    if planned_rps_per_replica <= 0:
        raise ValueError("planned_rps_per_replica must be positive")
    rates = np.asarray(rps, dtype=np.float64)
    rates = rates[np.isfinite(rates)]
    return np.maximum(np.ceil(np.maximum(rates, 0.0) / planned_rps_per_replica - 1e-9), min_replicas).astype(
        np.int64
    )


def break_even_level(needed: npt.ArrayLike, price_reserved: float, price_on_demand: float) -> int:
    """The highest k with share(hours needing >= k) > price_reserved / price_on_demand (0 if none)."""
    need = np.asarray(needed, dtype=np.int64)
    if need.size == 0 or price_on_demand <= 0:
        return 0
    ratio = price_reserved / price_on_demand
    if ratio >= 1:
        return 0  # reserved is no cheaper: never worth it
    counts = np.bincount(np.maximum(need, 0))
    at_least = np.cumsum(counts[::-1])[::-1] / need.size  # at_least[k] = share of intervals needing >= k
    above = np.flatnonzero(at_least[1:] > ratio + 1e-12) + 1
    return int(above.max()) if above.size else 0


def monthly_cost(
    needed: npt.ArrayLike, reserved: int, price_reserved: float, price_on_demand: float
) -> float:
    """Expected cost of a month like the hours given: ``reserved`` always paid, the rest on demand."""
    need = np.asarray(needed, dtype=np.float64)
    if need.size == 0:
        return reserved * price_reserved * HOURS_PER_MONTH
    on_demand_hours = float(np.maximum(need - reserved, 0.0).mean())
    return (reserved * price_reserved + on_demand_hours * price_on_demand) * HOURS_PER_MONTH


def plan(
    needed_per_hour: npt.ArrayLike, price_reserved: float, price_on_demand: float, step_s: float = 3600.0
) -> CostPlan:
    """The break-even recommendation and the options around it, from the replicas needed in each interval of
    ``step_s`` seconds (hours by default; the rule reads shares of time, so any step works)."""
    if price_reserved < 0 or price_on_demand <= 0:
        raise ValueError("prices must be positive (price_on_demand) and not negative (price_reserved)")
    need = np.asarray(needed_per_hour, dtype=np.int64)
    k = break_even_level(need, price_reserved, price_on_demand)
    peak = int(need.max()) if need.size else 0
    base = monthly_cost(need, 0, price_reserved, price_on_demand)
    at_peak = monthly_cost(need, peak, price_reserved, price_on_demand)
    candidates = [("on-demand only", 0), (f"reserve {k} (break-even)", k), ("reserve the peak", peak)]
    for other in (k - 1, k + 1):
        if 0 < other < peak and other != k:
            candidates.append((f"reserve {other}", other))
    seen: set[int] = set()
    options: list[PlanOption] = []
    for name, level in sorted(candidates, key=lambda c: (c[1] != k, c[1])):
        if level in seen:
            continue
        seen.add(level)
        cost = monthly_cost(need, level, price_reserved, price_on_demand)
        options.append(
            PlanOption(
                name,
                level,
                cost,
                1.0 - cost / base if base > 0 else 0.0,
                1.0 - cost / at_peak if at_peak > 0 else 0.0,
            )
        )
    share = float((need >= k).mean()) if need.size and k > 0 else 1.0
    return CostPlan(k, price_reserved / price_on_demand, need.size * step_s / 3600.0, peak, share, options)


def replicas_in_use(counts: npt.ArrayLike, step: int) -> npt.NDArray[np.int64]:
    """Replicas a deployment ran per interval of ``step`` samples (their mean, rounded up): the demand as the
    autoscaler itself met it, headroom included (incomplete last interval dropped)."""
    values = np.asarray(counts, dtype=np.float64)
    k = values.size // step
    return np.ceil(values[: k * step].reshape(k, step).mean(axis=1) - 1e-9).astype(np.int64)


def hourly_peaks(rps: npt.ArrayLike, step_s: float) -> npt.NDArray[np.float64]:
    """Per hour, the highest rate of the intervals of ``step_s`` seconds in it (complete hours only)."""
    rates = np.asarray(rps, dtype=np.float64)
    per_hour = max(1, round(3600.0 / step_s))
    hours = rates.size // per_hour
    if hours == 0:
        return np.empty(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an hour without samples is NaN
        return np.asarray(np.nanmax(rates[: hours * per_hour].reshape(hours, per_hour), axis=1))


def on_demand_and_reserved_prices(
    pools: tuple[CapacityPool, ...], price_per_replica_hour: float
) -> tuple[float, float]:
    """(price_reserved, price_on_demand) from a policy's pools; a missing reserved pool: 0.6 x on-demand
    (a typical 1-year commitment discount, docs/cost.md)."""
    reserved = [p.price_per_replica_hour for p in pools if p.kind == "reserved"]
    on_demand = [p.price_per_replica_hour for p in pools if p.kind == "on-demand"]
    od = min(on_demand) if on_demand else price_per_replica_hour
    return (min(reserved) if reserved else 0.6 * od), od
