"""Activation: the gateway's activator holds requests for a deployment with no replica ready and says so here."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from controller import repository
from controller.api.context import Admin, Context, DbSession
from controller.api.errors import problem_responses
from controller.api.routers.params import DeploymentName
from controller.api.routing import StrictJSONRoute

router = APIRouter(prefix="/deployments", tags=["deployments"], route_class=StrictJSONRoute)


class ActivateIn(BaseModel):
    """What the activator holds now."""

    model_config = ConfigDict(extra="forbid")

    held_requests: int = Field(
        ge=0, le=1_000_000, description="Requests the gateway holds for this deployment now (0: none any more)."
    )


class ActivateOut(BaseModel):
    """Whether this controller reconciles the deployment at once."""

    deployment: str
    held_requests: int
    reconciling: bool = Field(
        description="True: this controller owns the deployment and reconciles it now with the held count. False: "
        "another controller owns it (or none runs here); the owner decides at its next tick from the metrics."
    )


@router.post(
    "/{name}/activate",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 404, 422),
    summary="Requests are held for this deployment (no replica ready): reconcile it now",
)
def activate(name: DeploymentName, body: ActivateIn, session: DbSession, context: Context, _admin: Admin) -> ActivateOut:
    repository.get_deployment(session, name)  # 404 for an unknown deployment
    runtime = context.runtime
    reconciling = runtime.activate(name, body.held_requests) if runtime is not None else False
    return ActivateOut(deployment=name, held_requests=body.held_requests, reconciling=reconciling)
