"""The fleet at a glance: every deployment with its live status as its owning controller last reported it, which
controller owns it, filterable and paged in SQL (the API's /fleet and the dashboard's overview)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from controller.leases import bucket_of, lease_rows
from prewarm.db.models import Deployment, DeploymentStatus

FleetState = Literal["all", "errors", "maxed", "mismatch", "reactive", "stale"]
FLEET_STATES: tuple[FleetState, ...] = ("all", "errors", "maxed", "mismatch", "reactive", "stale")
STALE_AFTER = timedelta(seconds=60)  # a status older than this: no controller is deciding the deployment


@dataclass(frozen=True)
class FleetRow:
    name: str
    backend: str
    min_replicas: int
    max_replicas: int
    bucket: int
    owner: str | None  # the controller holding the bucket's lease now (None: nobody)
    reported_by: str | None  # the controller that wrote the status
    current_replicas: int | None
    desired_replicas: int | None
    ready_replicas: int | None
    step: str | None  # the decide() step in charge
    reason: str
    forecast_used: bool
    forecast_upper_rps: float | None
    decided_at: datetime | None
    updated_at: datetime | None
    error_stage: str | None
    error_message: str | None
    error_at: datetime | None
    errors_total: int
    stale: bool


def _state_condition(state: FleetState, now: datetime) -> ColumnElement[bool] | None:
    s = DeploymentStatus
    if state == "errors":
        return s.error_stage.is_not(None)
    if state == "maxed":
        return s.desired_replicas >= Deployment.max_replicas
    if state == "mismatch":
        return or_(s.ready_replicas != s.desired_replicas, s.current_replicas != s.desired_replicas)
    if state == "reactive":
        return and_(s.deployment_id.is_not(None), s.forecast_used.is_(False))
    if state == "stale":
        return or_(s.updated_at.is_(None), s.updated_at < now - STALE_AFTER)
    return None


def fleet_page(
    session: Session,
    *,
    buckets: int,
    now: datetime,
    name: str = "",
    state: FleetState = "all",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[FleetRow], int]:
    """One page of the fleet (by name) and how many deployments match the filter in all."""
    conditions: list[ColumnElement[bool]] = []
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(Deployment.name.ilike(f"%{escaped}%", escape="\\"))
    condition = _state_condition(state, now)
    if condition is not None:
        conditions.append(condition)
    joined = select(Deployment, DeploymentStatus).outerjoin(
        DeploymentStatus, DeploymentStatus.deployment_id == Deployment.id
    )
    total = int(
        session.scalar(
            select(func.count())
            .select_from(Deployment)
            .outerjoin(DeploymentStatus, DeploymentStatus.deployment_id == Deployment.id)
            .where(*conditions)
        )
        or 0
    )
    rows = session.execute(joined.where(*conditions).order_by(Deployment.name).limit(limit).offset(offset)).all()
    leases = lease_rows(session.connection())
    page = [_row(deployment, status, buckets, leases, now) for deployment, status in rows]
    return page, total


def fleet_summary(session: Session, now: datetime) -> dict[str, int]:
    """Counts for the overview's header: deployments, with errors, at max, not decided recently."""
    counts: dict[str, int] = {}
    base = select(func.count()).select_from(Deployment).outerjoin(
        DeploymentStatus, DeploymentStatus.deployment_id == Deployment.id
    )
    for state in FLEET_STATES:
        condition = _state_condition(state, now)
        query = base.where(condition) if condition is not None else base
        counts[state] = int(session.scalar(query) or 0)
    return counts


def status_of(session: Session, deployment_id: int) -> DeploymentStatus | None:
    return session.get(DeploymentStatus, deployment_id)


def owner_of(session: Session, name: str, buckets: int, now: datetime) -> str | None:
    """The controller whose live lease covers this deployment's bucket, or None."""
    holder, _term, expires = lease_rows(session.connection()).get(bucket_of(name, buckets), (None, 0, None))
    return holder if holder is not None and expires is not None and expires > now else None


def _row(
    deployment: Deployment,
    status: DeploymentStatus | None,
    buckets: int,
    leases: dict[int, tuple[str | None, int, datetime | None]],
    now: datetime,
) -> FleetRow:
    bucket = bucket_of(deployment.name, buckets)
    holder, _term, expires = leases.get(bucket, (None, 0, None))
    owner = holder if holder is not None and expires is not None and expires > now else None
    values: dict[str, Any] = {}
    if status is not None:
        values = {
            "reported_by": status.controller, "current_replicas": status.current_replicas,
            "desired_replicas": status.desired_replicas, "ready_replicas": status.ready_replicas,
            "step": status.source, "reason": status.reason, "forecast_used": status.forecast_used,
            "forecast_upper_rps": status.forecast_upper_rps, "decided_at": status.decided_at,
            "updated_at": status.updated_at, "error_stage": status.error_stage,
            "error_message": status.error_message, "error_at": status.error_at,
            "errors_total": status.errors_total,
        }  # fmt: skip
    updated = values.get("updated_at")
    return FleetRow(
        name=deployment.name,
        backend=deployment.backend,
        min_replicas=deployment.min_replicas,
        max_replicas=deployment.max_replicas,
        bucket=bucket,
        owner=owner,
        reported_by=values.get("reported_by"),
        current_replicas=values.get("current_replicas"),
        desired_replicas=values.get("desired_replicas"),
        ready_replicas=values.get("ready_replicas"),
        step=values.get("step"),
        reason=values.get("reason", ""),
        forecast_used=bool(values.get("forecast_used", False)),
        forecast_upper_rps=values.get("forecast_upper_rps"),
        decided_at=values.get("decided_at"),
        updated_at=updated,
        error_stage=values.get("error_stage"),
        error_message=values.get("error_message"),
        error_at=values.get("error_at"),
        errors_total=int(values.get("errors_total", 0) or 0),
        stale=updated is None or updated < now - STALE_AFTER,
    )
