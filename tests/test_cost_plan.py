"""The reserved-capacity plan (break-even rule) on a trace with a known answer, and the cost over a range."""

from __future__ import annotations

import numpy as np
import pytest

from controller import cost_plan
from controller.cost import CostMeter, CostPoint, cost_over, replicas_per_step
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


NON_SPOT = [1] * 8 + [3] * 12 + [4] * 4  # what the spot bound keeps off spot in those hours


def test_break_even_per_level_with_spot_by_hand() -> None:
    """Reserved 0.6, spot 0.3, on-demand 1.0. Level k is reserved iff 0.6 < share(non_spot >= k) + 0.3 x
    share(non_spot < k <= need): k=1: 1.0; k=2: 16/24 + 0.3 x 8/24 = 0.77; k=3: 16/24 = 0.67;
    k=4: 4/24 + 0.3 x 12/24 = 0.32. So 3, where the rule without spot reserves 5."""
    assert cost_plan.break_even_level(HOURS, 0.6, 1.0, NON_SPOT, 0.3) == 3
    plan = cost_plan.plan(np.array(HOURS), 0.6, 1.0, non_spot=np.array(NON_SPOT), price_spot=0.3)
    assert plan.recommended_reserved == 3 and plan.options[0].reserved == 3
    by_name = {o.name: o for o in plan.options}
    three = by_name["reserve 3 (break-even)"]
    # hours needing 8 (non-spot 4): 4 on spot, 1 on demand; needing 5 (non-spot 3): 2 on spot; needing 2: none
    assert three.mean_on_spot == pytest.approx((12 * 2 + 4 * 4) / 24)
    assert three.mean_on_demand == pytest.approx(4 / 24)
    assert three.monthly_cost == pytest.approx((3 * 0.6 + 4 / 24 + 0.3 * 40 / 24) * 730)
    assert by_name["on-demand only"].monthly_cost == pytest.approx(4.5 * 730)  # the baseline: all on demand
    assert three.saving_vs_on_demand == pytest.approx(1 - (1.8 + 4 / 24 + 0.5) / 4.5)
    no_reservation = by_name["no reservation (spot within the bound)"]
    assert no_reservation.mean_on_demand == pytest.approx(60 / 24) and no_reservation.mean_on_spot == 2.0
    assert plan.spot_eligible_share == pytest.approx(48 / 108)
    for level in range(0, 9):  # the rule picks the cheapest level of all
        cost = cost_plan.monthly_cost(HOURS, level, 0.6, 1.0, NON_SPOT, 0.3)
        assert cost >= three.monthly_cost - 1e-9
    assert "| reserve 3 (break-even) | 3 | 1.67 | 0.17 |" in plan.table()


def old_rule(need: np.ndarray, ratio: float) -> int:
    """The classic break-even rule, written independently: the highest k with share(need >= k) > ratio."""
    levels = [k for k in range(1, int(need.max()) + 1) if (need >= k).mean() > ratio + 1e-12]
    return max(levels, default=0)


@pytest.mark.parametrize("seed", range(20))
def test_without_spot_the_rule_is_the_classic_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    need = rng.integers(0, 12, size=int(rng.integers(1, 200)))
    non_spot = np.minimum(need, rng.integers(0, 12, size=need.size))
    reserved = float(rng.uniform(0.05, 0.95))
    expected = old_rule(need, reserved)
    assert cost_plan.break_even_level(need, reserved, 1.0) == expected
    assert cost_plan.break_even_level(need, reserved, 1.0, non_spot, None) == expected  # no spot price: no split
    assert cost_plan.break_even_level(need, reserved, 1.0, need, 0.3) == expected  # nothing above the bound
    with_spot = cost_plan.plan(need, reserved, 1.0, non_spot=need, price_spot=0.3)
    without = cost_plan.plan(need, reserved, 1.0)
    assert with_spot.recommended_reserved == without.recommended_reserved == expected
    assert cost_plan.monthly_cost(need, 3, reserved, 1.0, need, 0.3) == pytest.approx(
        cost_plan.monthly_cost(need, 3, reserved, 1.0)
    )


def test_the_plan_without_spot_has_no_spot_columns() -> None:
    table = cost_plan.plan(np.array(HOURS), 0.6, 1.0).table()
    assert "spot" not in table.splitlines()[0]
    spot_table = cost_plan.plan(np.array(HOURS), 0.6, 1.0, non_spot=np.array(NON_SPOT), price_spot=0.3).table()
    assert "mean replicas on spot" in spot_table.splitlines()[0]


def test_replicas_per_step_split_by_the_recorded_bound() -> None:
    points = [
        CostPoint(0.0, {"spot": 3, "on-demand": 3}, non_spot=3),
        CostPoint(120.0, {"on-demand": 4}),  # before the bound was recorded: all of it kept off spot
        CostPoint(180.0, {"spot": 0, "on-demand": 2}, non_spot=5),  # clipped to the total
    ]
    assert replicas_per_step(points, 0.0, 240.0) == ([6, 6, 4, 2], [3, 3, 4, 2])


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
