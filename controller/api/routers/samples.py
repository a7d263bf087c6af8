"""Metric ingestion for deployments whose metrics are pushed from outside (validated, idempotent batches)."""

from __future__ import annotations

from fastapi import APIRouter

from controller import repository
from controller.api.context import Admin, Context, DbSession
from controller.api.errors import problem_responses
from controller.api.routers.params import DeploymentName
from controller.api.routing import StrictJSONRoute
from controller.api.schemas import SampleBatch, SamplesWritten
from prewarm.db.store import Sample

router = APIRouter(prefix="/deployments/{name}/samples", tags=["metrics"], route_class=StrictJSONRoute)


@router.post(
    "",
    responses=problem_responses(401, 403, 404, 413, 422),
    summary="Write a batch of samples; all or nothing, re-sending is harmless",
)
def ingest_samples(
    name: DeploymentName, body: SampleBatch, session: DbSession, context: Context, _admin: Admin
) -> SamplesWritten:
    repository.get_deployment(session, name)
    session.rollback()  # end the read transaction: the store writes through its own connection
    samples = [Sample(name, s.metric, s.ts, s.value) for s in body.samples]
    return SamplesWritten(written=context.metrics_store().insert_samples(samples))
