"""Reads and writes of the controller's own state: deployments, policy versions, overrides, decisions, forecasts.

Every function takes a SQLAlchemy 2 ``Session`` first. Functions **flush, never commit**: the caller owns the
transaction (the API commits once per request, the loop once per tick), so several calls are atomic together.
Errors are specific: ``NotFoundError`` (a ``LookupError``) for unknown deployments, versions and overrides,
``ConflictError`` (a ``ValueError``) for duplicates and changes that no longer apply, and the policy's own
``pydantic.ValidationError`` / ``InvalidOverride`` for invalid values.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.overrides import OverrideKind, OverrideValue
from controller.policy import ScalingPolicy
from prewarm.db.models import (
    Deployment,
    ForecastPoint,
    ForecastRun,
    Override,
    Policy,
    ReplicaEvent,
    ScalingDecision,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ConflictError",
    "NotFoundError",
    "create_deployment",
    "create_override",
    "current_policy",
    "current_policy_versions",
    "delete_deployment",
    "end_override",
    "get_deployment",
    "latest_decision",
    "latest_forecast",
    "list_decisions",
    "list_deployments",
    "list_overrides",
    "list_policy_versions",
    "override_values",
    "record_decision",
    "replica_startup_s",
    "rollback_policy",
    "set_policy",
]


class NotFoundError(LookupError):
    """The deployment, policy version or override asked for does not exist."""


class ConflictError(ValueError):
    """The change clashes with the current state (a name already taken, an override already ended)."""


# -- deployments ----------------------------------------------------------------------------------------------


def create_deployment(
    session: Session,
    *,
    name: str,
    model: str,
    backend: str,
    backend_config: Mapping[str, Any],
    min_replicas: int,
    max_replicas: int,
    price_per_replica_hour: float | Decimal,
    policy: ScalingPolicy | None,
    author: str,
) -> Deployment:
    """Create a deployment and its policy version 1.

    The deployment's bounds and price win over the policy's: version 1 is ``policy`` (or the default policy) with
    ``min_replicas``, ``max_replicas`` and ``price_per_replica_hour`` set from the arguments (validated again).
    """
    if session.scalar(select(Deployment.id).where(Deployment.name == name)) is not None:
        raise ConflictError(f"deployment {name!r} already exists; pick another name or delete it first")
    spec = _with_bounds(policy or ScalingPolicy(), min_replicas, max_replicas, float(price_per_replica_hour))
    deployment = Deployment(
        name=name,
        model=model,
        backend=backend,
        backend_config=dict(backend_config),
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        price_per_replica_hour=Decimal(str(price_per_replica_hour)),
    )
    session.add(deployment)
    try:
        session.flush()
    except IntegrityError as error:  # a concurrent create of the same name won the race
        raise ConflictError(f"deployment {name!r} already exists") from error
    session.add(
        Policy(
            deployment_id=deployment.id,
            version=1,
            spec=_spec_json(spec),
            author=author,
            comment="created with the deployment",
        )
    )
    session.flush()
    logger.info("deployment %s created by %s (backend %s)", name, author, backend)
    return deployment


def get_deployment(session: Session, name: str) -> Deployment:
    """The deployment called ``name``; raises NotFoundError."""
    deployment = session.scalar(select(Deployment).where(Deployment.name == name))
    if deployment is None:
        raise NotFoundError(f"unknown deployment {name!r}")
    return deployment


def list_deployments(session: Session) -> list[Deployment]:
    """Every deployment, by name."""
    return list(session.scalars(select(Deployment).order_by(Deployment.name)))


def delete_deployment(session: Session, name: str, author: str) -> None:
    """Delete a deployment with all its samples, policies, overrides, decisions and forecasts (cascade)."""
    deployment = get_deployment(session, name)
    session.delete(deployment)
    session.flush()
    logger.info("deployment %s deleted by %s", name, author)


def _deployment_by_id(session: Session, deployment_id: int, *, lock: bool = False) -> Deployment:
    query = select(Deployment).where(Deployment.id == deployment_id)
    if lock:
        query = query.with_for_update()
    deployment = session.scalar(query)
    if deployment is None:
        raise NotFoundError(f"unknown deployment id {deployment_id}")
    return deployment


# -- policies -------------------------------------------------------------------------------------------------


def current_policy(session: Session, deployment_id: int) -> tuple[int, ScalingPolicy]:
    """The newest policy version of a deployment and the policy it holds."""
    row = session.scalar(
        select(Policy).where(Policy.deployment_id == deployment_id).order_by(Policy.version.desc()).limit(1)
    )
    if row is None:
        _deployment_by_id(session, deployment_id)
        raise NotFoundError(f"deployment id {deployment_id} has no policy")
    return row.version, ScalingPolicy.model_validate(row.spec)


def set_policy(
    session: Session, deployment_id: int, policy: ScalingPolicy, *, author: str, comment: str = ""
) -> int:
    """Store ``policy`` as the deployment's next version and copy its bounds and price to the deployment."""
    deployment = _deployment_by_id(session, deployment_id, lock=True)
    latest = session.scalar(select(func.max(Policy.version)).where(Policy.deployment_id == deployment_id))
    version = (latest or 0) + 1
    session.add(
        Policy(
            deployment_id=deployment_id,
            version=version,
            spec=_spec_json(policy),
            author=author,
            comment=comment,
        )
    )
    deployment.min_replicas = policy.min_replicas
    deployment.max_replicas = policy.max_replicas
    deployment.price_per_replica_hour = Decimal(str(policy.price_per_replica_hour))
    try:
        session.flush()
    except IntegrityError as error:  # two writers picked the same version number
        raise ConflictError(
            f"policy of deployment {deployment.name!r} changed concurrently; read it again and retry"
        ) from error
    logger.info("deployment %s policy version %d set by %s", deployment.name, version, author)
    return version


def current_policy_versions(session: Session) -> dict[int, int]:
    """The current policy version of every deployment, by deployment id."""
    rows = session.execute(
        select(Policy.deployment_id, func.max(Policy.version)).group_by(Policy.deployment_id)
    )
    return {deployment_id: version for deployment_id, version in rows}


def list_policy_versions(session: Session, deployment_id: int) -> list[Policy]:
    """Every policy version of a deployment, newest first."""
    _deployment_by_id(session, deployment_id)
    return list(
        session.scalars(
            select(Policy).where(Policy.deployment_id == deployment_id).order_by(Policy.version.desc())
        )
    )


def get_policy_version(session: Session, deployment_id: int, version: int) -> Policy:
    """One stored policy version; raises NotFoundError."""
    row = session.scalar(
        select(Policy).where(Policy.deployment_id == deployment_id, Policy.version == version)
    )
    if row is None:
        _deployment_by_id(session, deployment_id)
        raise NotFoundError(f"policy version {version} does not exist")
    return row


def rollback_policy(session: Session, deployment_id: int, version: int, *, author: str) -> int:
    """Make an old version current again by copying it as a new version; returns the new version."""
    old = get_policy_version(session, deployment_id, version)
    policy = ScalingPolicy.model_validate(old.spec)
    return set_policy(session, deployment_id, policy, author=author, comment=f"rollback to version {version}")


def _with_bounds(
    policy: ScalingPolicy, min_replicas: int, max_replicas: int, price_per_replica_hour: float
) -> ScalingPolicy:
    data = policy.model_dump()
    data.update(
        min_replicas=min_replicas, max_replicas=max_replicas, price_per_replica_hour=price_per_replica_hour
    )
    return ScalingPolicy.model_validate(data)


def _spec_json(policy: ScalingPolicy) -> dict[str, Any]:
    return policy.model_dump(mode="json")


# -- overrides ------------------------------------------------------------------------------------------------


def create_override(
    session: Session,
    deployment_id: int,
    *,
    kind: OverrideKind | str,
    value: int | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    author: str,
) -> Override:
    """Record an override; raises InvalidOverride when the kind, value or times do not fit together."""
    deployment = _deployment_by_id(session, deployment_id)
    checked = OverrideValue(
        kind=OverrideKind(kind), starts_at=starts_at.timestamp(), ends_at=ends_at.timestamp(), value=value
    )
    override = Override(
        deployment_id=deployment_id,
        kind=checked.kind.value,
        value=value,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        author=author,
    )
    session.add(override)
    session.flush()
    logger.info(
        "deployment %s override %d (%s %s) %s..%s by %s",
        deployment.name,
        override.id,
        override.kind,
        value,
        starts_at.isoformat(),
        ends_at.isoformat(),
        author,
    )
    return override


def _active_condition(moment: datetime) -> Any:
    return and_(
        Override.starts_at <= moment,
        Override.ends_at > moment,
        or_(Override.ended_at.is_(None), Override.ended_at > moment),
    )


def list_overrides(
    session: Session, deployment_id: int, *, active_at: datetime | None = None
) -> list[Override]:
    """A deployment's overrides, newest first; with ``active_at``, only those in force at that instant."""
    _deployment_by_id(session, deployment_id)
    query = select(Override).where(Override.deployment_id == deployment_id)
    if active_at is not None:
        query = query.where(_active_condition(active_at))
    return list(session.scalars(query.order_by(Override.starts_at.desc(), Override.id.desc())))


def get_override(session: Session, deployment_id: int, override_id: int) -> Override:
    """One override of a deployment; raises NotFoundError."""
    override = session.scalar(
        select(Override).where(Override.deployment_id == deployment_id, Override.id == override_id)
    )
    if override is None:
        _deployment_by_id(session, deployment_id)
        raise NotFoundError(f"override {override_id} does not exist for this deployment")
    return override


def end_override(
    session: Session, deployment_id: int, override_id: int, *, author: str, now: datetime
) -> Override:
    """End an override early (it stays in the history with who ended it and when).

    Raises ConflictError when it has already ended or expired: there is nothing left to end.
    """
    override = get_override(session, deployment_id, override_id)
    if override.ended_at is not None:
        raise ConflictError(
            f"override {override_id} was already ended at {override.ended_at.isoformat()} by {override.ended_by}"
        )
    if override.ends_at <= now:
        raise ConflictError(f"override {override_id} already expired at {override.ends_at.isoformat()}")
    override.ended_at = now
    override.ended_by = author
    session.flush()
    logger.info("override %d of deployment id %d ended by %s", override_id, deployment_id, author)
    return override


def effective_end(override: Override) -> datetime:
    """When an override stops applying: its planned end, or earlier when someone ended it."""
    if override.ended_at is not None and override.ended_at < override.ends_at:
        return override.ended_at
    return override.ends_at


def override_values(session: Session, deployment_id: int, now: datetime) -> list[OverrideValue]:
    """The overrides in force at ``now`` as ``decide()`` takes them (ends shortened by early endings)."""
    values: list[OverrideValue] = []
    for override in list_overrides(session, deployment_id, active_at=now):
        values.append(
            OverrideValue(
                kind=OverrideKind(override.kind),
                starts_at=override.starts_at.timestamp(),
                ends_at=effective_end(override).timestamp(),
                value=override.value,
                reason=override.reason,
            )
        )
    return values


# -- decisions ------------------------------------------------------------------------------------------------


def _json_reason(reason: Any) -> Any:
    if dataclasses.is_dataclass(reason) and not isinstance(reason, type):
        return dataclasses.asdict(reason)
    return reason


def record_decision(
    session: Session,
    deployment_id: int,
    *,
    ts: datetime,
    current: int,
    desired: int,
    applied: bool,
    source: str,
    reasons: Sequence[str] | Sequence[dict[str, Any]] | Sequence[Any],
    policy_version: int | None,
) -> ScalingDecision:
    """Append one decision to the log; reasons may be strings, dicts or dataclasses (stored as JSON)."""
    decision = ScalingDecision(
        deployment_id=deployment_id,
        ts=ts,
        current=current,
        desired=desired,
        applied=applied,
        source=source,
        reasons=[_json_reason(reason) for reason in reasons],
        policy_version=policy_version,
    )
    session.add(decision)
    session.flush()
    return decision


def list_decisions(
    session: Session,
    deployment_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ScalingDecision]:
    """Decisions with ``start <= ts < end``, newest first, one page of ``limit`` after ``offset``."""
    _deployment_by_id(session, deployment_id)
    query = select(ScalingDecision).where(ScalingDecision.deployment_id == deployment_id)
    if start is not None:
        query = query.where(ScalingDecision.ts >= start)
    if end is not None:
        query = query.where(ScalingDecision.ts < end)
    query = query.order_by(ScalingDecision.ts.desc(), ScalingDecision.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


def latest_decision(session: Session, deployment_id: int) -> ScalingDecision | None:
    """The newest decision of a deployment, or None."""
    return session.scalar(
        select(ScalingDecision)
        .where(ScalingDecision.deployment_id == deployment_id)
        .order_by(ScalingDecision.ts.desc(), ScalingDecision.id.desc())
        .limit(1)
    )


# -- forecasts and replica events -----------------------------------------------------------------------------


def latest_forecast(session: Session, deployment_id: int) -> tuple[ForecastRun, list[ForecastPoint]] | None:
    """The newest forecast run of a deployment with its points in time order, or None."""
    run = session.scalar(
        select(ForecastRun)
        .where(ForecastRun.deployment_id == deployment_id)
        .order_by(ForecastRun.created_at.desc(), ForecastRun.id.desc())
        .limit(1)
    )
    if run is None:
        return None
    points = list(
        session.scalars(
            select(ForecastPoint).where(ForecastPoint.run_id == run.id).order_by(ForecastPoint.target_ts)
        )
    )
    return run, points


def replica_startup_s(session: Session, deployment_id: int, *, recent: int = 20) -> float | None:
    """Median startup seconds of the ``recent`` newest ``ready`` replica events, or None when none is measured."""
    durations = list(
        session.scalars(
            select(ReplicaEvent.duration_s)
            .where(
                ReplicaEvent.deployment_id == deployment_id,
                ReplicaEvent.event == "ready",
                ReplicaEvent.duration_s.is_not(None),
            )
            .order_by(ReplicaEvent.ts.desc(), ReplicaEvent.id.desc())
            .limit(recent)
        )
    )
    values = [float(d) for d in durations if d is not None]
    return statistics.median(values) if values else None
