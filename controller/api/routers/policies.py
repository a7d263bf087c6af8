"""Policies: the current one, replace or patch it (a new version each time), list versions, roll back.

``GET .../policy`` returns an ``ETag`` (the version); sending it back in ``If-Match`` makes a change fail with 412
when someone else changed the policy in between.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response

from controller import repository
from controller.api.context import Admin, DbSession, Reader
from controller.api.errors import problem_responses
from controller.api.routers.params import DeploymentName, PositiveId
from controller.api.routing import StrictJSONRoute
from controller.api.schemas import PolicyOut, PolicyPatch, PolicyVersionList, RollbackRequest
from controller.api.views import policy_out, storable, validated_policy
from controller.policy import ScalingPolicy
from prewarm.db.models import Deployment

router = APIRouter(prefix="/deployments/{name}/policy", tags=["policies"], route_class=StrictJSONRoute)

Comment = Annotated[
    str,
    Query(
        max_length=1000, pattern=r"^[^\x00]*$", description="Why the policy changed (kept with the version)."
    ),
]
IfMatch = Annotated[
    str | None, Header(description='Only change the policy if its current version is this ETag, e.g. "3".')
]


def _etag(version: int) -> str:
    return f'"{version}"'


def _check_precondition(if_match: str | None, version: int) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    wanted = {tag.strip().removeprefix("W/").strip('"') for tag in if_match.split(",")}
    if str(version) not in wanted:
        raise HTTPException(
            412, f"the policy is at version {version}, not {if_match}; read it again and re-apply your change"
        )


def _store(
    session: DbSession,
    deployment: Deployment,
    policy: ScalingPolicy,
    author: str,
    comment: str,
    response: Response,
) -> PolicyOut:
    version = repository.set_policy(session, deployment.id, policy, author=author, comment=comment)
    session.commit()
    response.headers["ETag"] = _etag(version)
    return policy_out(deployment.name, repository.get_policy_version(session, deployment.id, version))


@router.get("", responses=problem_responses(401, 404), summary="The current policy")
def get_policy(name: DeploymentName, session: DbSession, _reader: Reader, response: Response) -> PolicyOut:
    deployment = repository.get_deployment(session, name)
    version, _ = repository.current_policy(session, deployment.id)
    response.headers["ETag"] = _etag(version)
    return policy_out(name, repository.get_policy_version(session, deployment.id, version))


@router.put(
    "",
    responses=problem_responses(401, 403, 404, 409, 412, 422),
    summary="Replace the policy (omitted fields take their defaults); adds a version",
)
def replace_policy(
    name: DeploymentName,
    body: ScalingPolicy,
    session: DbSession,
    admin: Admin,
    response: Response,
    comment: Comment = "",
    if_match: IfMatch = None,
) -> PolicyOut:
    deployment = repository.get_deployment(session, name)
    version, _ = repository.current_policy(session, deployment.id)
    _check_precondition(if_match, version)
    return _store(session, deployment, storable(body), admin.name, comment, response)


@router.patch(
    "",
    responses=problem_responses(401, 403, 404, 409, 412, 422),
    summary="Change some fields of the policy; adds a version",
)
def patch_policy(
    name: DeploymentName,
    body: PolicyPatch,
    session: DbSession,
    admin: Admin,
    response: Response,
    comment: Comment = "",
    if_match: IfMatch = None,
) -> PolicyOut:
    deployment = repository.get_deployment(session, name)
    version, current = repository.current_policy(session, deployment.id)
    _check_precondition(if_match, version)
    changes = body.model_dump(exclude_unset=True)
    merged = validated_policy({**current.model_dump(), **changes})
    return _store(session, deployment, merged, admin.name, comment, response)


@router.get("/versions", responses=problem_responses(401, 404), summary="Every version, newest first")
def list_versions(name: DeploymentName, session: DbSession, _reader: Reader) -> PolicyVersionList:
    deployment = repository.get_deployment(session, name)
    return PolicyVersionList(
        items=[policy_out(name, row) for row in repository.list_policy_versions(session, deployment.id)]
    )


@router.get("/versions/{version}", responses=problem_responses(401, 404), summary="One version")
def get_version(name: DeploymentName, version: PositiveId, session: DbSession, _reader: Reader) -> PolicyOut:
    deployment = repository.get_deployment(session, name)
    return policy_out(name, repository.get_policy_version(session, deployment.id, version))


@router.post(
    ":rollback",
    responses=problem_responses(401, 403, 404, 409, 412, 422),
    summary="Make an old version current again (copied as a new version)",
)
def rollback(
    name: DeploymentName,
    body: RollbackRequest,
    session: DbSession,
    admin: Admin,
    response: Response,
    if_match: IfMatch = None,
) -> PolicyOut:
    deployment = repository.get_deployment(session, name)
    current_version, _ = repository.current_policy(session, deployment.id)
    _check_precondition(if_match, current_version)
    version = repository.rollback_policy(session, deployment.id, body.version, author=admin.name)
    session.commit()
    response.headers["ETag"] = _etag(version)
    return policy_out(name, repository.get_policy_version(session, deployment.id, version))
