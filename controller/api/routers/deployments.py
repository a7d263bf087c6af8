"""Deployments: create, list, get, delete, and the live status of one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.exceptions import RequestValidationError

from controller import fleet, repository
from controller.api.context import Admin, Context, DbSession, Reader
from controller.api.errors import problem_responses
from controller.api.routers.params import DeploymentName
from controller.api.routing import StrictJSONRoute
from controller.api.schemas import (
    CapacityOut,
    DeploymentCreate,
    DeploymentError,
    DeploymentList,
    DeploymentOut,
    DeploymentStatus,
    LearnedCapacityOut,
)
from controller.api.views import (
    decision_out,
    deployment_out,
    forecast_summary,
    override_out,
    validated_policy,
)
from controller.leases import bucket_of
from controller.policy import ScalingPolicy

router = APIRouter(prefix="/deployments", tags=["deployments"], route_class=StrictJSONRoute)

BOUND_FIELDS = ("min_replicas", "max_replicas", "price_per_replica_hour")


def _initial_policy(body: DeploymentCreate) -> ScalingPolicy:
    """The policy's fields overlaid with the top-level bounds; the same field set twice differently is a 422."""
    given = body.policy.model_fields_set if body.policy is not None else set()
    data = (body.policy or ScalingPolicy()).model_dump()
    clashes: list[dict[str, Any]] = []
    for name in BOUND_FIELDS:
        top = getattr(body, name)
        if top is None:
            continue
        if name in given and data[name] != top:
            clashes.append(
                {
                    "loc": ("body", "policy", name),
                    "msg": f"{name} is {data[name]} here but {top} at the top level; give it once",
                    "type": "value_conflict",
                }
            )
        data[name] = top
    if clashes:
        raise RequestValidationError(clashes)
    return validated_policy(data)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422),
    summary="Create a deployment (and its policy version 1)",
)
def create_deployment(
    body: DeploymentCreate, session: DbSession, admin: Admin, request: Request, response: Response
) -> DeploymentOut:
    policy = _initial_policy(body)
    deployment = repository.create_deployment(
        session,
        name=body.name,
        model=body.model,
        backend=body.backend,
        backend_config=body.backend_config,
        min_replicas=policy.min_replicas,
        max_replicas=policy.max_replicas,
        price_per_replica_hour=policy.price_per_replica_hour,
        policy=policy,
        author=admin.name,
    )
    session.commit()
    response.headers["Location"] = f"{request.url.path.rstrip('/')}/{deployment.name}"
    return deployment_out(deployment, 1)


@router.get("", responses=problem_responses(401), summary="List deployments")
def list_deployments(session: DbSession, _reader: Reader) -> DeploymentList:
    versions = repository.current_policy_versions(session)
    return DeploymentList(
        items=[deployment_out(d, versions.get(d.id, 0)) for d in repository.list_deployments(session)]
    )


@router.get("/{name}", responses=problem_responses(401, 404), summary="Get a deployment")
def get_deployment(name: DeploymentName, session: DbSession, _reader: Reader) -> DeploymentOut:
    deployment = repository.get_deployment(session, name)
    version, _ = repository.current_policy(session, deployment.id)
    return deployment_out(deployment, version)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
    summary="Delete a deployment with its policies, overrides, decisions, forecasts and samples",
)
def delete_deployment(name: DeploymentName, session: DbSession, admin: Admin) -> Response:
    repository.delete_deployment(session, name, author=admin.name)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{name}/status",
    responses=problem_responses(401, 404),
    summary="Current, desired and ready replicas, last decision, latest forecast, active overrides",
)
def deployment_status(
    name: DeploymentName, session: DbSession, context: Context, _reader: Reader
) -> DeploymentStatus:
    now = datetime.now(UTC)
    deployment = repository.get_deployment(session, name)
    version, policy = repository.current_policy(session, deployment.id)
    decision = repository.latest_decision(session, deployment.id)
    forecast = repository.latest_forecast(session, deployment.id)
    live = context.runtime.status(name) if context.runtime is not None else None
    stored = fleet.status_of(session, deployment.id)
    buckets = context.settings.lease_buckets
    common: dict[str, Any] = {
        "deployment": name,
        "policy_version": version,
        "capacity": _capacity(live, stored, policy),
        "owner": fleet.owner_of(session, name, buckets, now),
        "bucket": bucket_of(name, buckets),
        "last_decision": decision_out(decision) if decision else None,
        "latest_forecast": forecast_summary(*forecast, now) if forecast else None,
        "active_overrides": [
            override_out(o, now) for o in repository.list_overrides(session, deployment.id, active_at=now)
        ],
    }
    if live is not None:
        error = live.get("error")
        return DeploymentStatus(
            **common,
            source="runtime",
            current_replicas=live.get("current_replicas"),
            desired_replicas=live.get("desired_replicas"),
            ready_replicas=live.get("ready_replicas"),
            step=live.get("source"),
            decided_at=_epoch(live.get("decided_at")),
            error=DeploymentError(stage=error["stage"], message=error["message"] or "", at=_epoch(error["at"]))
            if error
            else None,
            errors_total=int(live.get("errors_total") or 0),
        )
    if stored is not None:
        return DeploymentStatus(
            **common,
            source="status",
            current_replicas=stored.current_replicas,
            desired_replicas=stored.desired_replicas,
            ready_replicas=stored.ready_replicas,
            step=stored.source,
            decided_at=stored.decided_at,
            error=DeploymentError(stage=stored.error_stage, message=stored.error_message or "", at=stored.error_at)
            if stored.error_stage
            else None,
            errors_total=stored.errors_total,
        )
    return DeploymentStatus(
        **common,
        source="store",
        current_replicas=decision.current if decision else None,
        desired_replicas=decision.desired if decision else None,
        ready_replicas=None,
        step=decision.source if decision else None,
        decided_at=decision.ts if decision else None,
    )


def _capacity(live: dict[str, Any] | None, stored: Any, policy: ScalingPolicy) -> CapacityOut | None:
    """The learned capacity from the loop (this controller owns it) or from the owner's stored status."""
    shown = (live or {}).get("capacity") or (stored.capacity if stored is not None else None)
    if not shown:
        return None
    estimate = shown.get("estimate")
    return CapacityOut(
        in_use_rps=shown.get("in_use_rps"),
        mode=policy.capacity_mode,
        estimate=LearnedCapacityOut.model_validate(estimate) if estimate else None,
    )


def _epoch(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None
