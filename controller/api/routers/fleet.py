"""The fleet overview: every deployment's live status, owner and errors, filterable and paged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from controller.api.context import Context, DbSession, Reader
from controller.api.errors import problem_responses
from controller.api.schemas import DeploymentError, FleetItem, FleetPage
from controller.fleet import FleetRow, FleetState, fleet_page, fleet_summary

router = APIRouter(prefix="/fleet", tags=["fleet"])


def fleet_item(row: FleetRow) -> FleetItem:
    error = (
        DeploymentError(stage=row.error_stage, message=row.error_message or "", at=row.error_at)
        if row.error_stage
        else None
    )
    return FleetItem(
        name=row.name, backend=row.backend, min_replicas=row.min_replicas, max_replicas=row.max_replicas,
        bucket=row.bucket, owner=row.owner, decided_by=row.reported_by, current_replicas=row.current_replicas,
        desired_replicas=row.desired_replicas, ready_replicas=row.ready_replicas, step=row.step, reason=row.reason,
        forecast_used=row.forecast_used, forecast_upper_rps=row.forecast_upper_rps, decided_at=row.decided_at,
        idle_since=row.idle_since, next_wake_at=row.next_wake_at,
        updated_at=row.updated_at, stale=row.stale, error=error, errors_total=row.errors_total,
    )  # fmt: skip


@router.get("", responses=problem_responses(401, 422), summary="Every deployment's status, owner and errors")
def list_fleet(
    session: DbSession,
    context: Context,
    _reader: Reader,
    name: Annotated[str, Query(max_length=63, description="Only names containing this.")] = "",
    state: Annotated[FleetState, Query(description="Only deployments in this state.")] = "all",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> FleetPage:
    now = datetime.now(UTC)
    rows, total = fleet_page(
        session, buckets=context.settings.lease_buckets, now=now, name=name, state=state, limit=limit,
        offset=offset,
    )  # fmt: skip
    return FleetPage(
        items=[fleet_item(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        counts=fleet_summary(session, now),
    )
