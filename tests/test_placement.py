"""Capacity pools in the policy and the placement step after decide(): reserved first, spot within the risk bound,
on-demand for the rest, interruptions replaced at once, moves make-before-break."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.decide import DecisionState, Observations, decide
from controller.placement import non_spot_floor, non_spot_floors, place, with_placement, without_holds
from controller.policy import ScalingPolicy

POOLS: list[dict[str, Any]] = [
    {"name": "reserved", "kind": "reserved", "price_per_replica_hour": 0.06, "max_replicas": 3},
    {"name": "spot", "kind": "spot", "price_per_replica_hour": 0.03},
    {"name": "on-demand", "kind": "on-demand", "price_per_replica_hour": 0.10},
]


def pooled(**changes: Any) -> ScalingPolicy:
    return ScalingPolicy(max_replicas=40, pools=POOLS, **changes)


def test_no_pools_is_one_on_demand_pool_without_reasons() -> None:
    placement = place(ScalingPolicy(price_per_replica_hour=0.1), 7, reactive_need=3)
    assert placement.counts == {"on-demand": 7}
    assert placement.reasons == []


def test_reserved_first_then_spot_within_the_share_then_on_demand() -> None:
    placement = place(pooled(), 10, reactive_need=2)
    # spot_max_share 0.5: non-spot keeps 5 of 10 (the share beats the reactive need of 2)
    assert placement.counts == {"reserved": 3, "spot": 5, "on-demand": 2}
    assert any("5 on spot" in r.message for r in placement.reasons)


def test_the_reactive_need_stays_off_spot() -> None:
    placement = place(pooled(spot_max_share=1.0), 10, reactive_need=8)
    assert placement.counts == {"reserved": 3, "spot": 2, "on-demand": 5}
    assert "reactive need" in placement.reasons[1].message


def test_a_policy_share_of_the_reactive_need_stays_off_spot() -> None:
    """spot_reactive_share 0.5: the non-spot pools keep half the reactive need (rounded up), no less."""
    placement = place(pooled(spot_max_share=1.0, spot_reactive_share=0.5), 10, reactive_need=7)
    assert placement.non_spot == 4 == non_spot_floor(10, 7, 1.0, 0.5)
    assert placement.counts == {"reserved": 3, "spot": 6, "on-demand": 1}
    assert "50% of the reactive need" in placement.reasons[1].message
    assert place(pooled(spot_max_share=0.5, spot_reactive_share=0.5), 10, reactive_need=7).non_spot == 5  # share
    assert place(pooled(spot_max_share=1.0, spot_reactive_share=0.0), 10, reactive_need=7).counts["spot"] == 7


def test_the_reactive_share_is_a_share() -> None:
    for wrong in (-0.1, 1.5):
        with pytest.raises(ValidationError, match="spot_reactive_share"):
            pooled(spot_reactive_share=wrong)


def test_the_placement_records_its_spot_bound_for_the_cost_plan() -> None:
    placement = place(pooled(), 10, reactive_need=7)
    assert placement.non_spot == 7 == non_spot_floor(10, 7, 0.5)
    assert placement.as_json()["non_spot"] == 7
    assert place(pooled(), 10, reactive_need=2).non_spot == 5  # the share floor: ceil(0.5 x 10)
    assert place(pooled(), 2, reactive_need=2).non_spot == 2  # recorded even when reserved holds it all
    without_spot = place(ScalingPolicy(price_per_replica_hour=0.1), 7, reactive_need=3)
    assert without_spot.non_spot is None and "non_spot" not in without_spot.as_json()


@given(
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=0, max_value=80),
    st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    st.sampled_from([0.0, 0.5, 1.0]),
)
def test_spot_gets_exactly_what_the_bound_leaves_above_reserved(
    total: int, need: int, share: float, reactive_share: float
) -> None:
    """place() and the cost plan split a total by the same function: spot = total - max(reserved, bound)."""
    placement = place(pooled(spot_max_share=share, spot_reactive_share=reactive_share), total, reactive_need=need)
    bound = non_spot_floor(total, need, share, reactive_share)
    assert placement.counts["spot"] == max(0, total - max(3, bound))
    assert non_spot_floors([total], [need], share, reactive_share).tolist() == [bound]
    assert bound >= min(total, math.ceil(reactive_share * need))  # at least the share of the need


def test_below_the_reserved_size_everything_is_reserved() -> None:
    assert place(pooled(), 2, reactive_need=2).counts == {"reserved": 2, "spot": 0, "on-demand": 0}


def test_a_notice_is_replaced_at_once_on_demand_while_spot_is_taken_back() -> None:
    placement = place(
        pooled(), 10, reactive_need=4, leaving={"spot": 2}, current={"reserved": 3, "spot": 5, "on-demand": 2}
    )
    assert placement.counts == {"reserved": 3, "spot": 3, "on-demand": 4}
    assert placement.scale_counts == {"reserved": 3, "spot": 5, "on-demand": 4}  # the leaving ones still run
    assert placement.total == 10
    assert any(r.step == "interruption" for r in placement.reasons)


def test_moves_between_pools_are_make_before_break() -> None:
    # everything on demand and ready; the placement wants 5 on spot: on-demand keeps its replicas meanwhile
    ready = {"reserved": 3, "spot": 0, "on-demand": 7}
    placement = place(pooled(), 10, reactive_need=4, current=ready, ready=ready)
    assert placement.counts["spot"] == 5
    assert placement.counts["on-demand"] == 7
    # the 5 kept in on-demand are not decided: the next decision sees the 10, however many of them still run
    assert placement.held == 5 and placement.as_json()["held"] == 5
    assert without_holds(15, placement) == 10
    assert without_holds(12, placement) == 10  # some released already
    assert without_holds(8, placement) == 8  # fewer than decided (not placed yet): nothing to take off
    assert without_holds(15, place(pooled(), 10, reactive_need=4)) == 15  # no holds: as it is
    # once the spot replicas are ready, on-demand shrinks
    ready = {"reserved": 3, "spot": 5, "on-demand": 7}
    assert place(pooled(), 10, reactive_need=4, current=ready, ready=ready).counts["on-demand"] == 2


def test_full_pools_leave_replicas_unplaced() -> None:
    policy = ScalingPolicy(
        max_replicas=4,
        pools=[{"name": "od", "kind": "on-demand", "price_per_replica_hour": 1.0, "max_replicas": 4}],
    )
    placement = place(policy, 6)
    assert placement.unplaced == 2 and placement.counts == {"od": 4}


@given(
    total=st.integers(0, 40),
    need=st.integers(0, 40),
    share=st.floats(0, 1),
    gone=st.integers(0, 5),
)
def test_losing_every_spot_replica_leaves_the_reactive_need(
    total: int, need: int, share: float, gone: int
) -> None:
    policy = pooled(spot_max_share=share)
    current = {"reserved": 3, "spot": 10, "on-demand": 5}
    placement = place(policy, total, reactive_need=need, leaving={"spot": gone}, current=current)
    non_spot = placement.counts["reserved"] + placement.counts["on-demand"]
    assert placement.total == total
    assert non_spot >= min(total, need)
    assert placement.counts["spot"] <= share * total + 1e-9
    assert placement.counts["reserved"] <= 3


@pytest.mark.parametrize(
    ("pools", "message"),
    [
        ([{**POOLS[1], "name": "Spot"}], "DNS label"),
        ([POOLS[2], POOLS[2]], "unique"),
        ([POOLS[1]], "at least one reserved or on-demand"),
        ([{"name": "r", "kind": "reserved", "price_per_replica_hour": 1}], "committed size"),
        ([{**POOLS[2], "max_replicas": 2}], "hold at most 2"),
        ([{**POOLS[2], "colour": "red"}], "Extra inputs"),
    ],
)
def test_pool_validation_says_what_to_change(pools: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScalingPolicy(max_replicas=10, pools=pools)


def test_with_placement_appends_its_reasons_to_the_decision() -> None:
    policy = pooled(min_replicas=6)
    decision = decide(
        policy, Observations(current_replicas=6, ready_replicas=6), None, DecisionState(), 1000.0
    )
    placed = with_placement(policy, decision)
    assert placed.placement is not None and placed.placement.total == decision.desired
    assert placed.reasons[: len(decision.reasons)] == decision.reasons
    assert placed.reasons[len(decision.reasons) :] == placed.placement.reasons
