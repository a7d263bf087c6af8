"""Overrides: pin, floor, freeze, reactive-only and dry-run, each with an expiry and a reason; end one early."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from controller import repository
from controller.api.context import Admin, DbSession, Reader
from controller.api.errors import problem_responses
from controller.api.routers.params import DeploymentName, PositiveId
from controller.api.routing import StrictJSONRoute
from controller.api.schemas import OverrideCreate, OverrideList, OverrideOut
from controller.api.views import override_out

router = APIRouter(prefix="/deployments/{name}/overrides", tags=["overrides"], route_class=StrictJSONRoute)

StateFilter = Literal["all", "active", "scheduled", "past"]


def _window(body: OverrideCreate, now: datetime) -> tuple[datetime, datetime]:
    """Start and end of the override from the body; exactly one of ends_at and duration_s must be given."""
    starts_at = body.starts_at or now
    if (body.ends_at is None) == (body.duration_s is None):
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "ends_at"),
                    "msg": "give exactly one of ends_at and duration_s: every override must expire",
                    "type": "missing_expiry",
                }
            ]
        )
    if body.ends_at is not None:
        return starts_at, body.ends_at
    try:
        return starts_at, starts_at + timedelta(seconds=body.duration_s or 0.0)
    except OverflowError as error:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "duration_s"),
                    "msg": "the override would end after year 9999",
                    "type": "overflow",
                }
            ]
        ) from error


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 422),
    summary="Create an override (who made it is recorded)",
)
def create_override(
    name: DeploymentName,
    body: OverrideCreate,
    session: DbSession,
    admin: Admin,
    request: Request,
    response: Response,
) -> OverrideOut:
    now = datetime.now(UTC)
    deployment = repository.get_deployment(session, name)
    starts_at, ends_at = _window(body, now)
    override = repository.create_override(
        session,
        deployment.id,
        kind=body.kind,
        value=body.value,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=body.reason,
        author=admin.name,
    )
    session.commit()
    response.headers["Location"] = f"{request.url.path.rstrip('/')}/{override.id}"
    return override_out(override, now)


@router.get(
    "", responses=problem_responses(401, 404), summary="List overrides: active, scheduled, past or all"
)
def list_overrides(
    name: DeploymentName,
    session: DbSession,
    _reader: Reader,
    state: Annotated[StateFilter, Query(description="past = ended early or expired.")] = "all",
) -> OverrideList:
    now = datetime.now(UTC)
    deployment = repository.get_deployment(session, name)
    items = [override_out(o, now) for o in repository.list_overrides(session, deployment.id)]
    if state == "past":
        items = [o for o in items if o.state in ("ended", "expired")]
    elif state != "all":
        items = [o for o in items if o.state == state]
    return OverrideList(items=items)


@router.get("/{override_id}", responses=problem_responses(401, 404), summary="One override")
def get_override(
    name: DeploymentName, override_id: PositiveId, session: DbSession, _reader: Reader
) -> OverrideOut:
    deployment = repository.get_deployment(session, name)
    return override_out(repository.get_override(session, deployment.id, override_id), datetime.now(UTC))


@router.delete(
    "/{override_id}",
    responses=problem_responses(401, 403, 404, 409),
    summary="End an override now (it stays in the history with who ended it)",
)
def end_override(
    name: DeploymentName, override_id: PositiveId, session: DbSession, admin: Admin
) -> OverrideOut:
    now = datetime.now(UTC)
    deployment = repository.get_deployment(session, name)
    override = repository.end_override(session, deployment.id, override_id, author=admin.name, now=now)
    session.commit()
    return override_out(override, now)
