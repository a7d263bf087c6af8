"""The reserved-capacity plan: how many replicas to commit to, by the break-even rule per level (docs/cost.md).

A reserved replica costs ``price_reserved`` every hour. The k-th one replaces whatever would otherwise carry level k:
on-demand in the hours level k lies within the part the placement's spot bound keeps off spot (``non_spot``, from
``controller.placement.non_spot_floor``), spot in the hours it lies above it. Level k is reserved iff
``price_reserved x hours < price_on_demand x hours(k <= non_spot) + price_spot x hours(non_spot < k <= needed)``;
without spot every level needed is on-demand, and the rule is the classic one: reserve k when at least k replicas
are needed in more than ``price_reserved / price_on_demand`` of the hours. Pure: the demand comes in as replicas
needed per interval (from stored history, or a forecast), the prices from the policy's pools.
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
    """One way to buy the capacity: ``reserved`` replicas committed, spot within the bound (if a spot pool is
    planned with), the rest on demand."""

    name: str
    reserved: int
    monthly_cost: float
    saving_vs_on_demand: float  # 1 - cost / on-demand-only cost
    saving_vs_peak: float  # 1 - cost / reserving for the peak
    mean_on_spot: float = 0.0  # replicas spot carries on average
    mean_on_demand: float = 0.0  # replicas on demand on average


@dataclass(frozen=True)
class CostPlan:
    recommended_reserved: int
    break_even_share: float  # price_reserved / price_on_demand
    hours: float  # hours of demand the plan is based on
    peak_replicas: int
    share_at_recommended: float  # share of the time needing at least the recommended level
    options: list[PlanOption]
    price_spot: float | None = None  # the spot price planned with (None: no spot pool)
    spot_eligible_share: float = 0.0  # share of the replica-hours above the spot bound (spot may carry them)

    def as_json(self) -> dict[str, object]:
        return {
            "recommended_reserved": self.recommended_reserved,
            "break_even_share": round(self.break_even_share, 4),
            "hours": round(self.hours, 3),
            "peak_replicas": self.peak_replicas,
            "share_at_recommended": round(self.share_at_recommended, 4),
            "price_spot": self.price_spot,
            "spot_eligible_share": round(self.spot_eligible_share, 4),
            "options": [
                {
                    "name": o.name,
                    "reserved": o.reserved,
                    "monthly_cost": round(o.monthly_cost, 2),
                    "saving_vs_on_demand": round(o.saving_vs_on_demand, 4),
                    "saving_vs_peak": round(o.saving_vs_peak, 4),
                    "mean_on_spot": round(o.mean_on_spot, 3),
                    "mean_on_demand": round(o.mean_on_demand, 3),
                }
                for o in self.options
            ],
        }

    def table(self) -> str:
        """A Markdown table of the options, the recommendation first (with spot: what spot carries)."""
        spot = self.price_spot is not None
        extra = " mean replicas on spot | mean replicas on demand |" if spot else ""
        rows = [
            f"| option | reserved replicas |{extra} expected monthly cost | saving vs on-demand only | "
            "saving vs reserving the peak |",
            "|---|---:|" + ("---:|---:|" if spot else "") + "---:|---:|---:|",
        ]
        for o in self.options:
            carried = f" {o.mean_on_spot:.2f} | {o.mean_on_demand:.2f} |" if spot else ""
            rows.append(
                f"| {o.name} | {o.reserved} |{carried} {o.monthly_cost:.2f} | {100 * o.saving_vs_on_demand:.1f} % | "
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


def _non_spot(need: npt.NDArray[np.int64], non_spot: npt.ArrayLike | None) -> npt.NDArray[np.int64]:
    """The part of each interval's need kept off spot (all of it without a split), clipped to [0, need]."""
    if non_spot is None:
        return need
    kept = np.asarray(non_spot, dtype=np.int64)
    if kept.shape != need.shape:
        raise ValueError("non_spot needs one value per interval of needed")
    return np.clip(kept, 0, need)


def _at_least(values: npt.NDArray[np.int64], levels: int) -> npt.NDArray[np.float64]:
    """share[k] of the intervals with a value >= k, for k = 0 .. levels."""
    counts = np.bincount(np.maximum(values, 0), minlength=levels + 1)[: levels + 1]
    return np.cumsum(counts[::-1])[::-1] / values.size


def break_even_level(
    needed: npt.ArrayLike,
    price_reserved: float,
    price_on_demand: float,
    non_spot: npt.ArrayLike | None = None,
    price_spot: float | None = None,
) -> int:
    """The highest level k whose reserved replica costs less than what would carry it otherwise (0 if none):
    ``price_reserved < price_on_demand x share(non_spot >= k) + price_spot x share(non_spot < k <= needed)``.

    ``non_spot``: per interval, the replicas the placement's spot bound keeps off spot (None or no ``price_spot``:
    no spot pool, every level on demand: the classic rule share(needed >= k) > price_reserved / price_on_demand).
    The alternative's cost falls with k, so the levels worth reserving are 1..k.
    """
    need = np.maximum(np.asarray(needed, dtype=np.int64), 0)
    if need.size == 0 or price_on_demand <= 0:
        return 0
    ratio = price_reserved / price_on_demand
    if ratio >= 1:
        return 0  # reserved is no cheaper than on demand: never worth it
    peak = int(need.max())
    kept = _non_spot(need, non_spot if price_spot is not None else None)
    on_demand = _at_least(kept, peak)
    spot = _at_least(need, peak) - on_demand  # intervals with non_spot < k <= needed
    alternative = on_demand + (price_spot / price_on_demand if price_spot is not None else 0.0) * spot
    above = np.flatnonzero(alternative[1:] > ratio + 1e-12) + 1
    return int(above.max()) if above.size else 0


def carried(
    needed: npt.ArrayLike, reserved: int, non_spot: npt.ArrayLike | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(on spot, on demand) per interval with ``reserved`` replicas committed, as placement splits it: reserved
    first, spot above the bound ``non_spot`` (None: no spot), on-demand for the rest."""
    need = np.maximum(np.asarray(needed, dtype=np.int64), 0)
    kept = _non_spot(need, non_spot)
    spot = np.maximum(need - np.maximum(reserved, kept), 0)
    return spot, np.maximum(kept - reserved, 0)


def monthly_cost(
    needed: npt.ArrayLike,
    reserved: int,
    price_reserved: float,
    price_on_demand: float,
    non_spot: npt.ArrayLike | None = None,
    price_spot: float | None = None,
) -> float:
    """Expected cost of a month like the intervals given: ``reserved`` always paid, spot above the bound (when
    planned with), the rest on demand."""
    need = np.asarray(needed, dtype=np.int64)
    if need.size == 0:
        return reserved * price_reserved * HOURS_PER_MONTH
    spot, on_demand = carried(need, reserved, non_spot if price_spot is not None else None)
    spot_cost = float(spot.mean()) * price_spot if price_spot is not None else 0.0
    return (reserved * price_reserved + float(on_demand.mean()) * price_on_demand + spot_cost) * HOURS_PER_MONTH


def plan(
    needed_per_hour: npt.ArrayLike,
    price_reserved: float,
    price_on_demand: float,
    step_s: float = 3600.0,
    non_spot: npt.ArrayLike | None = None,
    price_spot: float | None = None,
) -> CostPlan:
    """The break-even recommendation and the options around it, from the replicas needed in each interval of
    ``step_s`` seconds (hours by default; the rule reads shares of time, so any step works). With ``price_spot``
    and ``non_spot`` (per interval, the replicas the spot bound keeps off spot) the plan knows spot carries what
    is above the bound; on-demand only is then still the baseline the savings are measured against."""
    if price_reserved < 0 or price_on_demand <= 0 or (price_spot is not None and price_spot < 0):
        raise ValueError("prices must be positive (price_on_demand) and not negative (price_reserved, price_spot)")
    need = np.maximum(np.asarray(needed_per_hour, dtype=np.int64), 0)
    if price_spot is None:
        non_spot = None
    kept = _non_spot(need, non_spot)
    k = break_even_level(need, price_reserved, price_on_demand, kept, price_spot)
    peak = int(need.max()) if need.size else 0
    base = float(need.mean()) * price_on_demand * HOURS_PER_MONTH if need.size else 0.0  # all on demand

    def cost(level: int) -> float:
        return monthly_cost(need, level, price_reserved, price_on_demand, kept, price_spot)

    at_peak = cost(peak)
    levels = {k: "reserve {} (break-even)"}
    levels.setdefault(peak, "reserve the peak")
    if price_spot is not None:
        levels.setdefault(0, "no reservation (spot within the bound)")
        if k == 0:
            levels[0] = "no reservation, spot within the bound (break-even)"
    for other in (k - 1, k + 1):
        if 0 < other < peak:
            levels.setdefault(other, "reserve {}")
    everything_on_demand = float(need.mean()) if need.size else 0.0
    options = [_option("on-demand only", 0, base, base, at_peak, 0.0, everything_on_demand)]
    for level, name in levels.items():
        if level == 0 and price_spot is None:
            continue  # the same as on-demand only
        spot, on_demand = carried(need, level, kept)
        means = (float(spot.mean()), float(on_demand.mean())) if need.size else (0.0, 0.0)
        options.append(_option(name.format(level), level, cost(level), base, at_peak, *means))

    def order(o: PlanOption) -> tuple[bool, int, bool]:
        is_recommended = o.reserved == k and (o.name != "on-demand only" or price_spot is None)
        return (not is_recommended, o.reserved, o.name != "on-demand only")

    options.sort(key=order)
    share = float((need >= k).mean()) if need.size and k > 0 else 1.0
    eligible = float((need - kept).sum() / need.sum()) if need.size and need.sum() else 0.0
    return CostPlan(
        k, price_reserved / price_on_demand, need.size * step_s / 3600.0, peak, share, options, price_spot, eligible
    )


def _option(
    name: str, level: int, cost: float, base: float, at_peak: float, on_spot: float, on_demand: float
) -> PlanOption:
    return PlanOption(
        name,
        level,
        cost,
        1.0 - cost / base if base > 0 else 0.0,
        1.0 - cost / at_peak if at_peak > 0 else 0.0,
        on_spot,
        on_demand,
    )


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


def spot_price(pools: tuple[CapacityPool, ...]) -> float | None:
    """The cheapest spot pool's price, None without a spot pool (the plan then prices no spot)."""
    prices = [p.price_per_replica_hour for p in pools if p.kind == "spot"]
    return min(prices) if prices else None
