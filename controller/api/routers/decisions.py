"""The decision log: paged, newest first, filterable by time range, each decision with its reasons."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime

from controller import repository
from controller.api.context import DbSession, Reader
from controller.api.errors import problem_responses
from controller.api.routers.params import DeploymentName
from controller.api.schemas import DecisionPage
from controller.api.views import decision_out

router = APIRouter(prefix="/deployments/{name}/decisions", tags=["decisions"])


@router.get("", responses=problem_responses(401, 404, 422), summary="Decisions with start <= ts < end")
def list_decisions(
    name: DeploymentName,
    session: DbSession,
    _reader: Reader,
    start: Annotated[AwareDatetime | None, Query(description="Inclusive, ISO 8601 with a zone.")] = None,
    end: Annotated[AwareDatetime | None, Query(description="Exclusive, ISO 8601 with a zone.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> DecisionPage:
    if start is not None and end is not None and end <= start:
        raise RequestValidationError(
            [{"loc": ("query", "end"), "msg": "end must be after start", "type": "range_empty"}]
        )
    deployment = repository.get_deployment(session, name)
    rows = repository.list_decisions(
        session, deployment.id, start=start, end=end, limit=limit + 1, offset=offset
    )
    more = len(rows) > limit
    return DecisionPage(
        items=[decision_out(d) for d in rows[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )
