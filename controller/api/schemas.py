"""Request and response bodies of the REST API (pydantic), with the examples shown in the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from controller.overrides import OverrideKind
from controller.policy import ScalingPolicy

DEPLOYMENT_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # a DNS-1123 label, valid as a Kubernetes name
MAX_SAMPLES_PER_BATCH = 100_000
Backend = Literal["local", "kubernetes", "keda", "swarm", "dry-run"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- deployments ----------------------------------------------------------------------------------------------


class DeploymentCreate(_Body):
    """A new deployment. Bounds and price given here win over those in ``policy``; omitted, they come from it."""

    name: str = Field(min_length=1, max_length=63, pattern=DEPLOYMENT_NAME, description="DNS-1123 label.")
    model: str = Field(min_length=1, max_length=255, description="Model the replicas serve.")
    backend: Backend = Field(default="local", description="What runs the replicas.")
    backend_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend settings, e.g. {'namespace': 'ml', 'deployment': 'digits'}.",
    )
    min_replicas: int | None = Field(default=None, ge=0, le=10_000)
    max_replicas: int | None = Field(default=None, ge=1, le=10_000)
    price_per_replica_hour: float | None = Field(default=None, ge=0, le=1e6)
    policy: ScalingPolicy | None = Field(
        default=None, description="Version 1 of the policy (defaults otherwise)."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "digits",
                    "model": "digits_mlp",
                    "backend": "local",
                    "backend_config": {},
                    "min_replicas": 1,
                    "max_replicas": 6,
                    "price_per_replica_hour": 0.12,
                    "policy": {"replica_capacity_rps": 300, "target_utilisation": 0.7},
                }
            ]
        },
    )


class DeploymentOut(BaseModel):
    """A deployment as stored, with its current policy version."""

    name: str
    model: str
    backend: str
    backend_config: dict[str, Any]
    min_replicas: int
    max_replicas: int
    price_per_replica_hour: float
    created_at: datetime
    policy_version: int


class DeploymentList(BaseModel):
    items: list[DeploymentOut]


# -- policies -------------------------------------------------------------------------------------------------


class PolicyOut(BaseModel):
    """One version of a deployment's policy and who made it."""

    deployment: str
    version: int
    author: str
    comment: str
    created_at: datetime
    policy: ScalingPolicy


class PolicyVersionList(BaseModel):
    items: list[PolicyOut] = Field(description="Newest first.")


def _patch_model() -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, field in ScalingPolicy.model_fields.items():
        annotation: Any = field.annotation
        fields[name] = (annotation | None, Field(default=None, description=field.description))
    return create_model(
        "PolicyPatch",
        __config__=ConfigDict(
            extra="forbid", json_schema_extra={"examples": [{"max_replicas": 12, "target_utilisation": 0.6}]}
        ),
        __doc__="Fields to change; the others keep their current value. The merged policy is validated whole.",
        **fields,
    )


if TYPE_CHECKING:
    PolicyPatch = BaseModel
else:
    PolicyPatch = _patch_model()


class RollbackRequest(_Body):
    """Make an old version current again (it is copied as a new version)."""

    version: int = Field(ge=1, le=2**31 - 1)

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 1}]})


# -- overrides ------------------------------------------------------------------------------------------------


class OverrideCreate(_Body):
    """An override from ``starts_at`` (default: now) until ``ends_at`` or for ``duration_s`` (give one)."""

    kind: OverrideKind = Field(
        description="pin, floor (need value), freeze, reactive-only, dry-run (no value)."
    )
    value: int | None = Field(default=None, ge=0, le=10_000, description="Replica count for pin and floor.")
    starts_at: AwareDatetime | None = Field(default=None, description="Default: now.")
    ends_at: AwareDatetime | None = None
    duration_s: float | None = Field(default=None, gt=0, le=366 * 86400)
    reason: str = Field(min_length=1, max_length=1000, description="Why; shown in the decision log.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "pin", "value": 5, "duration_s": 7200, "reason": "product launch 14:00-16:00"}
            ]
        },
    )


OverrideState = Literal["scheduled", "active", "ended", "expired"]


class OverrideOut(BaseModel):
    """An override and what became of it."""

    id: int
    kind: OverrideKind
    value: int | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    author: str
    created_at: datetime
    ended_at: datetime | None = Field(description="Set when someone ended it early.")
    ended_by: str | None
    state: OverrideState


class OverrideList(BaseModel):
    items: list[OverrideOut] = Field(description="Newest start first.")


# -- decisions ------------------------------------------------------------------------------------------------


class DecisionOut(BaseModel):
    """What the controller decided at ``ts`` and why (one reason per step that mattered)."""

    id: int
    ts: datetime
    current: int
    desired: int
    applied: bool
    source: str
    reasons: list[Any]
    policy_version: int | None
    placement: dict[str, Any] | None = Field(
        default=None,
        description="Replicas per capacity pool: counts, leaving (under a notice), unplaced; with a spot pool "
        "non_spot (the spot bound: replicas the reserved and on-demand pools keep).",
    )


class DecisionPage(BaseModel):
    items: list[DecisionOut] = Field(description="Newest first.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last page.")


# -- forecasts ------------------------------------------------------------------------------------------------


class ForecastPointOut(BaseModel):
    """The forecast request rate (rps) of the interval starting at ``ts``: point and band."""

    ts: datetime
    point: float
    lower: float
    upper: float


class ForecastOut(BaseModel):
    """A stored forecast: which model, when, and its points (limited to the horizon asked for)."""

    deployment: str
    run_id: int
    created_at: datetime
    model: str
    step_s: float
    horizon_s: float
    quantile_low: float
    quantile_high: float
    recent_mae: float | None
    detail: dict[str, Any]
    points: list[ForecastPointOut]


class ForecastSummary(BaseModel):
    """The newest forecast in brief (the full one is at .../forecasts/latest)."""

    run_id: int
    created_at: datetime
    model: str
    horizon_s: float
    next_upper_rps: float | None = Field(description="Upper band of the first future interval, if any.")


# -- status ---------------------------------------------------------------------------------------------------


class DeploymentError(BaseModel):
    """The newest error of a deployment's reconcile (the others went on)."""

    stage: str = Field(description="database, policy, metrics, backend, lease or unexpected.")
    message: str
    at: datetime | None


class LearnedCapacityOut(BaseModel):
    """What the deployment's own observations say about the rps one replica serves within the latency SLO."""

    rps_per_replica: float
    observations: int = Field(description="Seconds of evidence (decayed) at loads that informed the estimate.")
    confidence: float = Field(description="0-1: amount of evidence, and whether the capacity is bracketed.")
    basis: str = Field(description="'latency knee', 'cpu saturation' or 'lower bound' (no overload seen yet).")
    bracketed: bool
    strained_rps: float | None = Field(
        default=None,
        description="The lowest load per replica at which a quarter of the seconds were bad (null: not seen); "
        "a learned capacity is never planned above it.",
    )


class CapacityOut(BaseModel):
    in_use_rps: float | None = Field(description="The per-replica capacity the last decision planned with.")
    mode: str | None = Field(default=None, description="The policy's capacity_mode: configured or learned.")
    estimate: LearnedCapacityOut | None


class DeploymentStatus(BaseModel):
    """Where a deployment stands now."""

    deployment: str
    source: Literal["runtime", "status", "store"] = Field(
        description="'runtime': live from this controller's loop (it owns the deployment); 'status': as the "
        "owning controller last reported it; 'store': only the decision log knows (never decided by a loop yet)."
    )
    current_replicas: int | None
    desired_replicas: int | None
    ready_replicas: int | None
    policy_version: int
    owner: str | None = Field(default=None, description="The controller whose lease covers this deployment.")
    bucket: int | None = Field(default=None, description="Its lease bucket (a hash of the name).")
    step: str | None = Field(default=None, description="The decide() step in charge of the count.")
    decided_at: datetime | None = None
    idle_since: datetime | None = Field(
        default=None, description="First second of the current stretch without traffic (null while traffic flows)."
    )
    next_wake_at: datetime | None = Field(
        default=None, description="At zero replicas: when the forecast says to wake (one lead time before traffic)."
    )
    error: DeploymentError | None = None
    errors_total: int = 0
    capacity: CapacityOut | None = None
    last_decision: DecisionOut | None
    latest_forecast: ForecastSummary | None
    active_overrides: list[OverrideOut]


class FleetItem(BaseModel):
    """One deployment in the fleet overview."""

    name: str
    backend: str
    min_replicas: int
    max_replicas: int
    bucket: int
    owner: str | None = Field(description="The controller whose lease covers the deployment now.")
    decided_by: str | None = Field(description="The controller that made the latest decision.")
    current_replicas: int | None
    desired_replicas: int | None
    ready_replicas: int | None
    step: str | None
    reason: str
    forecast_used: bool
    forecast_upper_rps: float | None
    decided_at: datetime | None
    idle_since: datetime | None = Field(default=None, description="Idle (no request) since this time.")
    next_wake_at: datetime | None = Field(default=None, description="At zero: the planned predictive wake-up.")
    updated_at: datetime | None
    stale: bool = Field(description="No controller reported on it in the last minute.")
    error: DeploymentError | None
    errors_total: int


class FleetPage(BaseModel):
    items: list[FleetItem]
    total: int = Field(description="Deployments matching the filter.")
    limit: int
    offset: int
    counts: dict[str, int] = Field(description="Deployments per state: all, errors, maxed, mismatch, ...")


# -- samples --------------------------------------------------------------------------------------------------


class SampleIn(_Body):
    """One metric value; ``ts`` in Unix epoch seconds."""

    metric: str = Field(min_length=1, max_length=64, description="e.g. rps, latency_p95_ms, cpu_percent.")
    ts: float
    value: float


class SampleBatch(_Body):
    samples: list[SampleIn] = Field(min_length=1, max_length=MAX_SAMPLES_PER_BATCH)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"samples": [{"metric": "rps", "ts": 1714564800, "value": 412.0}]}]},
    )


class SamplesWritten(BaseModel):
    written: int = Field(description="Distinct (metric, ts) keys written; re-sent samples replace old ones.")
