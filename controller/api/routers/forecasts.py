"""Forecasts: the latest one (points with bands, limited to a horizon) and running one now."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from controller import repository
from controller.api.context import Admin, ApiContext, Context, DbSession, Reader
from controller.api.errors import problem_responses
from controller.api.forecast_refresh import ForecasterUnavailable, direct_forecast_job
from controller.api.routers.params import DeploymentName
from controller.api.schemas import ForecastOut
from controller.api.views import forecast_out

router = APIRouter(prefix="/deployments/{name}/forecasts", tags=["forecasts"])

HorizonS = Annotated[
    float | None,
    Query(
        gt=0,
        le=366 * 86400,
        description="Only points starting within this many seconds of the forecast's creation.",
    ),
]


def _latest(session: DbSession, name: str, horizon_s: float | None) -> ForecastOut:
    deployment = repository.get_deployment(session, name)
    found = repository.latest_forecast(session, deployment.id)
    if found is None:
        _, policy = repository.current_policy(session, deployment.id)
        raise HTTPException(
            404,
            f"no forecast yet for deployment {name!r}: the schedule runs every {policy.forecast_refit_interval_s:g} s "
            "once request-rate samples exist; POST .../forecasts:refresh runs one now",
        )
    run, points = found
    return forecast_out(name, run, points, horizon_s)


@router.get(
    "/latest", responses=problem_responses(401, 404, 422), summary="The newest forecast with its bands"
)
def latest_forecast(
    name: DeploymentName, session: DbSession, _reader: Reader, horizon_s: HorizonS = None
) -> ForecastOut:
    return _latest(session, name, horizon_s)


def _latest_in_thread(context: ApiContext, name: str, horizon_s: float | None) -> ForecastOut:
    with context.sessions() as session:
        return _latest(session, name, horizon_s)


def _check_exists(context: ApiContext, name: str) -> None:
    with context.sessions() as session:
        repository.get_deployment(session, name)


@router.post(
    ":refresh",
    responses=problem_responses(401, 403, 404, 409, 503),
    summary="Run a forecast now (in a worker thread) and return it",
)
async def refresh_forecast(
    name: DeploymentName, context: Context, _admin: Admin, horizon_s: HorizonS = None
) -> ForecastOut:
    await asyncio.to_thread(_check_exists, context, name)
    if context.runtime is not None:
        try:
            await context.runtime.refresh_forecast(name)
        except ForecasterUnavailable as error:
            raise HTTPException(503, str(error)) from error
    else:
        async with context.refresh_lock:  # one fit at a time in this process
            try:
                if context.forecast_job is None:
                    context.forecast_job = direct_forecast_job(context.engine, context.settings)
            except ForecasterUnavailable as error:
                raise HTTPException(503, str(error)) from error
            await asyncio.to_thread(context.forecast_job, name)
    try:
        return await asyncio.to_thread(_latest_in_thread, context, name, horizon_s)
    except HTTPException as error:
        if error.status_code != 404:
            raise
        raise HTTPException(
            409,
            f"no forecast could be made for {name!r}: there are no request-rate ('rps') samples in the policy's "
            "history window yet; push samples (POST .../samples) or let the gateway collect them",
        ) from error
