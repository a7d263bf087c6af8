"""Cost: what a deployment's replicas cost by pool, the reserved-capacity plan, and spot interruption notices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from controller import cost_plan, cost_queries, repository
from controller.api.context import Admin, Context, DbSession, Reader
from controller.api.errors import problem_responses
from controller.api.routers.params import DeploymentName
from controller.api.routing import StrictJSONRoute
from controller.cost import cost_over, replicas_per_step
from controller.pools import effective_pools

router = APIRouter(prefix="/deployments/{name}", tags=["cost"], route_class=StrictJSONRoute)

MAX_RANGE = timedelta(days=366)


class InterruptionCreate(BaseModel):
    """A notice that spot replicas of a pool will be taken back (from a node-termination handler or a cloud
    webhook). Give ``replica`` (a pod or replica id) or ``count``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"pool": "spot", "replica": "digits-spot-7d9f-abcde", "notice_s": 120}]
        },
    )

    pool: str = Field(min_length=1, max_length=40, description="The spot pool the replicas run in.")
    replica: str | None = Field(
        default=None, min_length=1, max_length=253, description="The pod / replica id."
    )
    count: int | None = Field(default=None, ge=1, le=10_000, description="Replicas interrupted (default 1).")
    notice_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="Seconds until they go (default: the policy's interruption_notice_s).",
    )


class InterruptionOut(BaseModel):
    id: int
    pool: str
    replica: str | None
    count: int
    notice_s: float
    received_at: datetime
    leaves_at: datetime
    source: str
    duplicate: bool = Field(
        description="True when this replica already had a pending notice (not counted again)."
    )


class PoolCost(BaseModel):
    pool: str
    kind: str
    price_per_replica_hour: float
    replica_seconds: float
    cost: float


class CostOut(BaseModel):
    """Replica-seconds by pool x price over ``[since, until)``, from the decisions acted on (reserved pools: their
    whole committed size)."""

    deployment: str
    since: datetime
    until: datetime
    pools: list[PoolCost]
    total: float
    on_demand_only: float = Field(description="The same replicas, all at the on-demand price.")
    static_peak: float = Field(description="The range's peak count held all along, on demand.")
    saving_vs_on_demand: float | None
    saving_vs_static_peak: float | None
    interruptions: int


def _bad(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", field), "msg": message, "type": "value_error"}])


@router.post(
    "/interruptions",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 422),
    summary="Report a spot interruption notice: the replicas are replaced at once",
)
def create_interruption(
    name: DeploymentName, body: InterruptionCreate, session: DbSession, _admin: Admin, response: Response
) -> InterruptionOut:
    deployment = repository.get_deployment(session, name)
    _, policy = repository.current_policy(session, deployment.id)
    kinds = {p.name: p.kind for p in policy.pools}
    if body.pool not in kinds:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "pool"),
                    "msg": f"deployment {name!r} has no pool {body.pool!r}"
                    + (f"; its pools: {', '.join(sorted(kinds))}" if kinds else "; its policy sets no pools"),
                    "type": "unknown_pool",
                }
            ]
        )
    if kinds[body.pool] != "spot":
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "pool"),
                    "msg": f"pool {body.pool!r} is {kinds[body.pool]}, not spot",
                    "type": "not_spot",
                }
            ]
        )
    if body.replica is not None and body.count not in (None, 1):
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "count"),
                    "msg": "one replica id is one replica: give replica or count",
                    "type": "conflict",
                }
            ]
        )
    notice = body.notice_s if body.notice_s is not None else policy.interruption_notice_s
    row, created = cost_queries.record_interruption(
        session, deployment.id, body.pool, count=body.count or 1, notice_s=notice, replica=body.replica,
        source="api", now=datetime.now(UTC),
    )  # fmt: skip
    session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    return InterruptionOut(
        id=row.id, pool=row.pool, replica=row.replica, count=row.count, notice_s=row.notice_s, received_at=row.ts,
        leaves_at=row.leaves_at, source=row.source, duplicate=not created,
    )  # fmt: skip


@router.get("/cost", responses=problem_responses(401, 404, 422), summary="Cost by pool over a time range")
def get_cost(
    name: DeploymentName,
    session: DbSession,
    _reader: Reader,
    since: Annotated[
        AwareDatetime | None, Query(description="Inclusive, ISO 8601 with a zone (default: 24 h ago).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Exclusive, ISO 8601 with a zone (default: now).")
    ] = None,
) -> CostOut:
    now = datetime.now(UTC)
    until = until or now
    since = since or until - timedelta(days=1)
    if until <= since:
        raise _bad("until", "until must be after since")
    if until - since > MAX_RANGE:
        raise _bad("since", "at most 366 days at once")
    if until > now + timedelta(minutes=5):
        raise _bad("until", "until must not be in the future")
    deployment = repository.get_deployment(session, name)
    _, policy = repository.current_policy(session, deployment.id)
    points = cost_queries.cost_points(session, deployment.id, since, until)
    report = cost_over(policy, points, since.timestamp(), until.timestamp())
    pools = effective_pools(policy.pools, policy.price_per_replica_hour)
    return CostOut(
        deployment=name, since=since, until=until,
        pools=[
            PoolCost(
                pool=p.name, kind=p.kind, price_per_replica_hour=p.price_per_replica_hour,
                replica_seconds=round(report.replica_seconds[p.name], 3), cost=round(report.money[p.name], 6),
            )
            for p in pools
        ],
        total=round(report.total, 6), on_demand_only=round(report.on_demand_money, 6),
        static_peak=round(report.static_peak_money, 6),
        saving_vs_on_demand=report.saving(report.on_demand_money),
        saving_vs_static_peak=report.saving(report.static_peak_money),
        interruptions=sum(r.count for r in cost_queries.interruptions(session, deployment.id, since, until)),
    )  # fmt: skip


@router.get(
    "/cost/plan",
    responses=problem_responses(401, 404, 422),
    summary="How many replicas to reserve (break-even)",
)
def get_cost_plan(
    name: DeploymentName,
    session: DbSession,
    _reader: Reader,
    context: Context,
    days: Annotated[float, Query(gt=0, le=366, description="Days of stored history to plan on.")] = 28.0,
    basis: Annotated[
        Literal["replicas", "demand"],
        Query(
            description="replicas: the replicas the deployment ran per minute (decision log, headroom included); "
            "demand: each hour's peak request rate at the planned load per replica."
        ),
    ] = "replicas",
) -> dict[str, Any]:
    deployment = repository.get_deployment(session, name)
    _, policy = repository.current_policy(session, deployment.id)
    until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    since = until - timedelta(days=days)
    needed: Any
    non_spot: Any = None
    if basis == "replicas":
        points = cost_queries.cost_points(session, deployment.id, since, until)
        needed, non_spot = replicas_per_step(points, since.timestamp(), until.timestamp())
    else:
        needed = cost_queries.needed_per_hour(context.metrics_store(), name, policy, since, until)
    price_reserved, price_on_demand = cost_plan.on_demand_and_reserved_prices(
        policy.pools, policy.price_per_replica_hour
    )
    if price_on_demand <= 0:
        raise _bad(
            "days", "the policy has no on-demand price: set price_per_replica_hour or an on-demand pool"
        )
    # demand: what the load needs is what the reactive path needs, which the spot bound keeps off spot
    price_spot = cost_plan.spot_price(policy.pools) if basis == "replicas" else None
    plan = cost_plan.plan(
        needed, price_reserved, price_on_demand, 60.0 if basis == "replicas" else 3600.0, non_spot, price_spot
    )
    return {"deployment": name, "basis": basis, "since": since.isoformat(), "until": until.isoformat(),
            "price_reserved": price_reserved, "price_on_demand": price_on_demand, **plan.as_json()}  # fmt: skip
