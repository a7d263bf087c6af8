"""Placement: the pure step right after ``decide()`` that splits its total across capacity pools (docs/cost.md).

1. reserved pools first (cheapest first, each up to its committed size): paid for anyway;
2. spot pools within the risk bound: the reserved and on-demand replicas alone must carry what the reactive path
   needs now (``Decision.reactive``; or the policy's ``spot_reactive_share`` of it) and at least ``1 - spot_max_share``
   of the total, so losing every spot replica at once degrades the headroom (or, with a share below 1, the service
   in part for a replica's startup), never collapses it;
3. on-demand pools for the rest (cheapest first, each up to its size); what no pool holds is ``unplaced``.

Replicas under an interruption notice (``leaving``) are not counted as capacity: they are replaced at once. A spot
pool being taken back (a notice pending) does not grow while it is, so its replacements go on-demand when no other
spot pool has room. Moving replicas between pools is make-before-break: a pool shrinks only as far as the ready
replicas elsewhere allow (``ready``), so the total that serves now never drops because of a move. Those held
replicas are not a decision to keep them: the next decision sees the pools' count without them (``without_holds``),
or the thresholds' band would keep them and every move between pools would raise the count for good.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from controller.decision_values import Decision, Placement, Reason
from controller.policy import ScalingPolicy
from controller.pools import CapacityPool, effective_pools

__all__ = ["Placement", "non_spot_floor", "non_spot_floors", "place", "with_placement", "without_holds"]

_EPS = 1e-9


def non_spot_floor(
    total: int, reactive_need: int | None, spot_max_share: float, reactive_share: float = 1.0
) -> int:
    """The spot bound: replicas of ``total`` the reserved and on-demand pools keep, so that losing every spot replica
    at once leaves ``reactive_share`` of what the reactive path needs now (rounded up) and at least
    ``1 - spot_max_share`` of the total."""
    share_floor = math.ceil((1.0 - spot_max_share) * total - _EPS)
    need_floor = math.ceil(reactive_share * max(0, reactive_need or 0) - _EPS)
    return min(max(0, total), max(0, need_floor, share_floor))


def non_spot_floors(
    totals: npt.ArrayLike, reactive_needs: npt.ArrayLike | None, spot_max_share: float, reactive_share: float = 1.0
) -> npt.NDArray[np.int64]:
    """``non_spot_floor`` of each interval (the cost plan's split of a demand history); no reactive needs: 0."""
    total = np.maximum(np.asarray(totals, dtype=np.int64), 0)
    need = np.zeros_like(total) if reactive_needs is None else np.asarray(reactive_needs, dtype=np.int64)
    floors = [
        non_spot_floor(int(n), int(r), spot_max_share, reactive_share) for n, r in zip(total, need, strict=True)
    ]
    return np.asarray(floors, dtype=np.int64)


def _room(pool: CapacityPool, leaving: Mapping[str, int], current: Mapping[str, int] | None) -> int:
    """Replicas the pool may be asked for (not counting those leaving): its size minus what is leaving; a spot pool
    being taken back no more than it still has."""
    gone = leaving.get(pool.name, 0)
    room = math.inf if pool.max_replicas is None else pool.max_replicas - gone
    if pool.kind == "spot" and gone > 0 and current is not None:
        room = min(room, current.get(pool.name, 0) - gone)
    return int(max(0, room)) if room != math.inf else 1 << 30


def place(
    policy: ScalingPolicy,
    total: int,
    reactive_need: int | None = None,
    leaving: Mapping[str, int] | None = None,
    current: Mapping[str, int] | None = None,
    ready: Mapping[str, int] | None = None,
) -> Placement:
    """Split ``total`` replicas across the policy's pools.

    ``reactive_need``: replicas the reactive path needs now (the spot bound keeps at least these off spot).
    ``leaving``: per pool, replicas with an interruption notice. ``current`` / ``ready``: per pool, replicas held
    now and ready now (both including leaving ones); with ``ready`` a move between pools is make-before-break.
    """
    pools = effective_pools(policy.pools, policy.price_per_replica_hour)
    names = {p.name for p in pools}
    leaving = {k: v for k, v in (leaving or {}).items() if v > 0 and k in names}
    counts = {p.name: 0 for p in pools}
    reasons: list[Reason] = []
    remaining = max(0, total)
    implicit = not policy.pools

    def by_price(kind: str) -> list[CapacityPool]:
        return sorted((p for p in pools if p.kind == kind), key=lambda p: p.price_per_replica_hour)

    for pool in by_price("reserved"):
        n = min(remaining, _room(pool, leaving, current))
        counts[pool.name] += n
        remaining -= n
    reserved = total - remaining
    if reserved and not implicit:
        reasons.append(Reason("placement", f"{reserved} on reserved capacity (paid for anyway)"))

    spot_pools = by_price("spot")
    reactive_share = policy.spot_reactive_share
    non_spot = non_spot_floor(total, reactive_need, policy.spot_max_share, reactive_share) if spot_pools else None
    if spot_pools and remaining:
        need = math.ceil(reactive_share * max(0, reactive_need or 0) - _EPS)
        share_floor = math.ceil((1.0 - policy.spot_max_share) * total - _EPS)
        keep = non_spot if non_spot is not None else total
        allowed = min(remaining, max(0, total - keep))
        placed = 0
        for pool in spot_pools:
            n = min(allowed - placed, _room(pool, leaving, current))
            counts[pool.name] += n
            placed += n
        remaining -= placed
        of_need = "reactive need" if reactive_share >= 1.0 else f"{reactive_share:.0%} of the reactive need"
        why = of_need if need >= share_floor else f"{1 - policy.spot_max_share:.0%} of the total"
        short = [p.name for p in spot_pools if leaving.get(p.name)]
        reasons.append(
            Reason(
                "placement",
                f"{placed} on spot (bound {allowed}: reserved and on-demand keep {keep}, the {why}, if every spot "
                f"replica goes at once)"
                + (f"; {', '.join(short)} being taken back: not grown" if short else ""),
            )
        )

    for pool in by_price("on-demand"):
        n = min(remaining, _room(pool, leaving, current))
        counts[pool.name] += n
        remaining -= n
    if not implicit:
        on_demand = sum(counts[p.name] for p in pools if p.kind == "on-demand")
        reasons.append(Reason("placement", f"{on_demand} on on-demand"))
    if remaining:
        reasons.append(Reason("placement", f"no pool has room for {remaining} more replicas: not placed"))
    if leaving:
        gone = ", ".join(f"{n} in {k}" for k, n in sorted(leaving.items()))
        reasons.append(Reason("interruption", f"replacing {gone} under an interruption notice"))

    held = _hold_moves(pools, counts, leaving, ready, total - remaining, reasons) if ready is not None else 0
    return Placement(
        counts=counts, leaving=leaving, reasons=reasons, unplaced=remaining, non_spot=non_spot, held=held
    )


def _hold_moves(
    pools: tuple[CapacityPool, ...],
    counts: dict[str, int],
    leaving: Mapping[str, int],
    ready: Mapping[str, int],
    placed: int,
    reasons: list[Reason],
) -> int:
    """Keep ready replicas of shrinking pools until the growing pools' new replicas are ready (in place); returns
    how many are kept so."""
    serving = {p.name: max(0, ready.get(p.name, 0) - leaving.get(p.name, 0)) for p in pools}
    covered = sum(min(serving[name], counts[name]) for name in counts)
    short = min(placed, sum(serving.values())) - covered
    if short <= 0:
        return 0
    held: list[str] = []
    kept = 0
    for pool in sorted(
        pools, key=lambda p: -p.price_per_replica_hour
    ):  # keep the dear ones only while needed
        extra = serving[pool.name] - counts[pool.name]
        n = min(short, max(0, extra))
        if n:
            counts[pool.name] += n
            short -= n
            kept += n
            held.append(f"{n} in {pool.name}")
        if not short:
            break
    if held:
        reasons.append(
            Reason("placement", f"keep {', '.join(held)} until the replicas replacing them are ready")
        )
    return kept


def without_holds(current: int, last: Placement | None) -> int:
    """The count decide() sees with pools: ``current`` (replicas the pools hold, not counting those leaving) without
    the ones the last placement kept only for a move, as far as the pools still hold more than it decided."""
    if last is None or last.held <= 0:
        return current
    decided = last.total - last.held
    return current - min(last.held, max(0, current - decided))


def with_placement(
    policy: ScalingPolicy,
    decision: Decision,
    leaving: Mapping[str, int] | None = None,
    current: Mapping[str, int] | None = None,
    ready: Mapping[str, int] | None = None,
) -> Decision:
    """The decision with its placement, the placement's reasons appended to its own."""
    placement = place(policy, decision.desired, decision.reactive, leaving, current, ready)
    return dataclasses.replace(decision, placement=placement, reasons=[*decision.reasons, *placement.reasons])
