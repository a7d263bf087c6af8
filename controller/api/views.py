"""Stored rows as API bodies (pure functions: rows and the time in, schema values out)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pydantic
from fastapi.exceptions import RequestValidationError

from controller.api.schemas import (
    DecisionOut,
    DeploymentOut,
    ForecastOut,
    ForecastPointOut,
    ForecastSummary,
    OverrideOut,
    OverrideState,
    PolicyOut,
)
from controller.overrides import OverrideKind
from controller.policy import ScalingPolicy
from controller.repository import effective_end
from prewarm.db.models import Deployment, ForecastPoint, ForecastRun, Override, Policy, ScalingDecision


def deployment_out(deployment: Deployment, policy_version: int) -> DeploymentOut:
    return DeploymentOut(
        name=deployment.name,
        model=deployment.model,
        backend=deployment.backend,
        backend_config=deployment.backend_config,
        min_replicas=deployment.min_replicas,
        max_replicas=deployment.max_replicas,
        price_per_replica_hour=float(deployment.price_per_replica_hour),
        created_at=deployment.created_at,
        policy_version=policy_version,
    )


def policy_out(deployment_name: str, row: Policy) -> PolicyOut:
    return PolicyOut(
        deployment=deployment_name,
        version=row.version,
        author=row.author,
        comment=row.comment,
        created_at=row.created_at,
        policy=ScalingPolicy.model_validate(row.spec),
    )


def override_state(override: Override, now: datetime) -> OverrideState:
    """scheduled (not started), active, ended (stopped early by someone) or expired (ran its course)."""
    end = effective_end(override)
    if now >= end:
        return "ended" if end != override.ends_at else "expired"
    if now < override.starts_at:
        return "scheduled"
    return "active"


def override_out(override: Override, now: datetime) -> OverrideOut:
    return OverrideOut(
        id=override.id,
        kind=OverrideKind(override.kind),
        value=override.value,
        starts_at=override.starts_at,
        ends_at=override.ends_at,
        reason=override.reason,
        author=override.author,
        created_at=override.created_at,
        ended_at=override.ended_at,
        ended_by=override.ended_by,
        state=override_state(override, now),
    )


def decision_out(decision: ScalingDecision) -> DecisionOut:
    return DecisionOut(
        id=decision.id,
        ts=decision.ts,
        current=decision.current,
        desired=decision.desired,
        applied=decision.applied,
        source=decision.source,
        reasons=list(decision.reasons),
        policy_version=decision.policy_version,
        placement=decision.placement,
    )


def forecast_out(
    deployment_name: str, run: ForecastRun, points: Sequence[ForecastPoint], horizon_s: float | None
) -> ForecastOut:
    """The run with its points; with ``horizon_s``, only points starting before ``created_at + horizon_s``."""
    if horizon_s is not None:
        until = run.created_at + timedelta(seconds=horizon_s)
        points = [p for p in points if p.target_ts < until]
    return ForecastOut(
        deployment=deployment_name,
        run_id=run.id,
        created_at=run.created_at,
        model=run.model_name,
        step_s=run.step_s,
        horizon_s=run.horizon_s,
        quantile_low=run.quantile_low,
        quantile_high=run.quantile_high,
        recent_mae=run.recent_mae,
        detail=run.detail,
        points=[
            ForecastPointOut(ts=p.target_ts, point=p.point, lower=p.lower, upper=p.upper) for p in points
        ],
    )


def forecast_summary(run: ForecastRun, points: Sequence[ForecastPoint], now: datetime) -> ForecastSummary:
    upcoming = [p for p in points if p.target_ts + timedelta(seconds=run.step_s) > now]
    return ForecastSummary(
        run_id=run.id,
        created_at=run.created_at,
        model=run.model_name,
        horizon_s=run.horizon_s,
        next_upper_rps=upcoming[0].upper if upcoming else None,
    )


def validated_policy(data: dict[str, Any], prefix: Sequence[str | int] = ("body",)) -> ScalingPolicy:
    """Validate a merged policy; errors become a 422 with field paths under ``prefix``."""
    try:
        policy = ScalingPolicy.model_validate(data)
    except pydantic.ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": (*prefix, *e["loc"]), "ctx": None} for e in error.errors(include_url=False)]
        ) from error
    return storable(policy, prefix)


MAX_PRICE_PER_REPLICA_HOUR = 999_999.0  # the deployments table keeps the price as numeric(12, 6)


def storable(policy: ScalingPolicy, prefix: Sequence[str | int] = ("body",)) -> ScalingPolicy:
    """The policy if the store can hold it; a 422 otherwise (the price column is bounded)."""
    if policy.price_per_replica_hour > MAX_PRICE_PER_REPLICA_HOUR:
        raise RequestValidationError(
            [
                {
                    "loc": (*prefix, "price_per_replica_hour"),
                    "msg": f"price_per_replica_hour must be <= {MAX_PRICE_PER_REPLICA_HOUR:.0f}",
                    "type": "less_than_equal",
                }
            ]
        )
    return policy
