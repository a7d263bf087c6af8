"""The reserved-capacity plan (break-even rule) on a trace with a known answer, and the cost over a range."""

from __future__ import annotations

import numpy as np
import pytest

from controller import cost_plan
from controller.cost import CostMeter, CostPoint, cost_over
from controller.policy import ScalingPolicy

PLANNED = 100.0  # rps one replica carries at the planned utilisation


HOURS = [2] * 8 + [5] * 12 + [8] * 4  # replicas each hour of a day needs


def day_trace(days: int = 7) -> np.ndarray:
    """Per minute, a week: each hour peaks at exactly its level in its first minute, below it otherwise."""
    rng = np.random.default_rng(7)
    levels = np.repeat(np.tile(np.array(HOURS, dtype=np.float64), days), 60) * PLANNED
    rates = levels * rng.uniform(0.5, 0.99, levels.size)
    rates[::60] = levels[::60]
    return rates


def test_break_even_level_on_a_known_trace() -> None:
    rates = day_trace()
    needed = cost_plan.replicas_needed(cost_plan.hourly_peaks(rates, 60.0), PLANNED)
    assert needed.size == 7 * 24
    assert sorted(set(needed.tolist())) == [2, 5, 8]
    # shares of hours needing at least k: k <= 2: 1.0; 3..5: 16/24; 6..8: 4/24
    assert cost_plan.break_even_level(needed, 0.6, 1.0) == 5
    assert cost_plan.break_even_level(needed, 0.7, 1.0) == 2
    assert cost_plan.break_even_level(needed, 0.1, 1.0) == 8
    assert cost_plan.break_even_level(needed, 1.0, 1.0) == 0


def test_plan_costs_and_savings_by_hand() -> None:
    needed = np.array(HOURS)
    plan = cost_plan.plan(needed, 0.6, 1.0)
    assert plan.recommended_reserved == 5 and plan.peak_replicas == 8
    by_name = {o.reserved: o for o in plan.options}
    # on demand only: mean need 4.5 replicas x 730 h
    assert by_name[0].monthly_cost == pytest.approx(4.5 * 730)
    # reserve 5: 5 x 0.6 + mean(max(need - 5, 0)) = 12 / 24 on demand
    assert by_name[5].monthly_cost == pytest.approx((3.0 + 0.5) * 730)
    # reserve the peak: 8 x 0.6; one fewer (4): 2.4 + (12 x 1 + 4 x 4) / 24 on demand
    assert by_name[8].monthly_cost == pytest.approx(4.8 * 730)
    assert by_name[4].monthly_cost == pytest.approx((2.4 + (12 * 1 + 4 * 4) / 24) * 730)
    assert by_name[5].saving_vs_on_demand == pytest.approx(1 - 3.5 / 4.5)
    assert by_name[5].saving_vs_peak == pytest.approx(1 - 3.5 / 4.8)
    assert plan.options[0].reserved == 5  # the recommendation first
    assert all(
        o.monthly_cost >= by_name[5].monthly_cost - 1e-9 for o in plan.options
    )  # break-even is cheapest
    assert "| reserve 5 (break-even) | 5 |" in plan.table()


def test_cost_over_a_range_by_pool() -> None:
    policy = ScalingPolicy(
        max_replicas=20,
        pools=[
            {"name": "reserved", "kind": "reserved", "price_per_replica_hour": 0.6, "max_replicas": 2},
            {"name": "spot", "kind": "spot", "price_per_replica_hour": 0.3},
            {"name": "on-demand", "kind": "on-demand", "price_per_replica_hour": 1.0},
        ],
    )
    points = [
        CostPoint(0.0, {"reserved": 2, "spot": 2, "on-demand": 0}),
        CostPoint(3600.0, {"reserved": 2, "spot": 4, "on-demand": 2}),
    ]
    report = cost_over(policy, points, 1800.0, 5400.0)  # half an hour of each
    assert report.replica_seconds == {
        "reserved": 2 * 3600.0,
        "spot": 2 * 1800 + 4 * 1800.0,
        "on-demand": 2 * 1800.0,
    }
    assert report.money["spot"] == pytest.approx(3 * 0.3)
    assert report.total == pytest.approx(2 * 0.6 + 0.9 + 1.0)
    assert report.on_demand_money == pytest.approx(4 * 0.5 + 8 * 0.5)
    assert report.static_peak_money == pytest.approx(8 * 1.0)
    meter = CostMeter()
    meter.add(policy, 0.0, {"reserved": 2, "spot": 2})
    meter.add(policy, 3600.0, {"reserved": 2, "spot": 4, "on-demand": 2})
    assert meter.money == pytest.approx({"reserved": 1.2, "spot": 0.6, "on-demand": 0.0})
    assert meter.savings(policy)["on_demand"] == pytest.approx(1 - 1.8 / 4.0)
