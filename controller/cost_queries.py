"""The store's side of cost: interruption notices in and out, the placements of the decision log, the demand
history the cost plan reads. Thin: the rules are in controller/cost.py and controller/cost_plan.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import cost_plan
from controller.cost import CostPoint
from controller.policy import ScalingPolicy
from controller.pools import DEFAULT_POOL
from prewarm import metric_names
from prewarm.db.models import ScalingDecision, SpotInterruption
from prewarm.db.store import MetricsStore


def record_interruption(
    session: Session,
    deployment_id: int,
    pool: str,
    *,
    count: int,
    notice_s: float,
    replica: str | None,
    source: str,
    now: datetime,
) -> tuple[SpotInterruption, bool]:
    """Store a notice; a replica already under a pending notice is not counted twice. (row, created)."""
    if replica is not None:
        pending = session.scalars(
            select(SpotInterruption).where(
                SpotInterruption.deployment_id == deployment_id,
                SpotInterruption.pool == pool,
                SpotInterruption.replica == replica,
                SpotInterruption.leaves_at > now,
            )
        ).first()
        if pending is not None:
            return pending, False
    row = SpotInterruption(
        deployment_id=deployment_id,
        ts=now,
        pool=pool,
        replica=replica,
        count=count,
        notice_s=notice_s,
        leaves_at=now + timedelta(seconds=notice_s),
        source=source,
    )
    session.add(row)
    session.flush()
    return row, True


def interruptions(
    session: Session, deployment_id: int, since: datetime, until: datetime
) -> list[SpotInterruption]:
    return list(
        session.scalars(
            select(SpotInterruption)
            .where(
                SpotInterruption.deployment_id == deployment_id,
                SpotInterruption.ts >= since,
                SpotInterruption.ts < until,
            )
            .order_by(SpotInterruption.ts)
        ).all()
    )


def _counts(desired: int, placement: dict[str, Any] | None) -> dict[str, int]:
    stored = placement.get("counts") if placement else None
    if placement and isinstance(stored, dict):
        counts = {str(k): int(v) for k, v in stored.items()}
        leaving = placement.get("leaving")
        if isinstance(leaving, dict):
            for pool, n in leaving.items():
                counts[str(pool)] = counts.get(str(pool), 0) + int(n)
        return counts
    return {DEFAULT_POOL: desired}


def _non_spot(placement: dict[str, Any] | None) -> int | None:
    kept = placement.get("non_spot") if placement else None
    return int(kept) if isinstance(kept, int | float) else None


def cost_points(session: Session, deployment_id: int, since: datetime, until: datetime) -> list[CostPoint]:
    """The replicas per pool asked for over ``[since, until)``: the decisions of the range and the one in force at
    ``since``. Decisions not acted on (dry-run) do not change what runs."""
    base = select(ScalingDecision.ts, ScalingDecision.desired, ScalingDecision.placement).where(
        ScalingDecision.deployment_id == deployment_id, ScalingDecision.applied.is_(True)
    )
    before = session.execute(
        base.where(ScalingDecision.ts < since).order_by(ScalingDecision.ts.desc()).limit(1)
    ).all()
    within = session.execute(
        base.where(ScalingDecision.ts >= since, ScalingDecision.ts < until).order_by(ScalingDecision.ts)
    ).all()
    return [
        CostPoint(ts.timestamp(), _counts(desired, placement), _non_spot(placement))
        for ts, desired, placement in [*before, *within]
    ]


def needed_per_hour(
    store: MetricsStore, deployment: str, policy: ScalingPolicy, since: datetime, until: datetime
) -> np.ndarray:
    """Replicas each hour of the stored request rate needs (its highest minute at the planned utilisation)."""
    series = store.resample(deployment, metric_names.REQUESTS_RPS, since, until, 60.0, "max")
    peaks = cost_plan.hourly_peaks(series.to_numpy(dtype=np.float64), 60.0)
    peaks = peaks[np.isfinite(peaks)]
    return cost_plan.replicas_needed(peaks, policy.planned_rps_per_replica, policy.min_replicas)


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
