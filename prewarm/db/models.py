"""SQLAlchemy 2 typed models: the whole persistent state of prewarm.

Postgres gets the types that fit (timestamptz, jsonb, numeric for money); the same models run on SQLite.
Timestamps are always timezone-aware UTC in Python, whatever the backend stores.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on Postgres; on SQLite, naive UTC text read back as aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: prewarm stores timezone-aware UTC timestamps only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


class Deployment(Base):
    """An inference service that prewarm scales: a model served by replicas on a backend."""

    __tablename__ = "deployments"
    __table_args__ = (
        CheckConstraint("min_replicas >= 0", name="min_replicas_non_negative"),
        CheckConstraint("max_replicas >= min_replicas", name="max_not_below_min"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    model: Mapped[str] = mapped_column(String(255))
    backend: Mapped[str] = mapped_column(String(32), default="local")
    backend_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    min_replicas: Mapped[int] = mapped_column(Integer, default=1)
    max_replicas: Mapped[int] = mapped_column(Integer, default=10)
    price_per_replica_hour: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal("0"))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class MetricSample(Base):
    """One measured value of one metric of one deployment at one instant (unique per that triple)."""

    __tablename__ = "metric_samples"

    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    value: Mapped[float] = mapped_column(Float)

    # The primary key (deployment_id, metric, ts) is the index for time-range reads; this one serves retention.
    __table_args__ = (Index("ix_metric_samples_ts", "ts"),)


class ForecastRun(Base):
    """One forecast: which model made it, when, for which horizon, and how well that model did recently."""

    __tablename__ = "forecast_runs"
    __table_args__ = (
        Index("ix_forecast_runs_deployment_created", "deployment_id", "created_at"),
        Index("ix_forecast_runs_created", "created_at"),  # retention
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    model_name: Mapped[str] = mapped_column(String(64))
    step_s: Mapped[float] = mapped_column(Float)
    horizon_s: Mapped[float] = mapped_column(Float)
    quantile_low: Mapped[float] = mapped_column(Float, default=0.1)
    quantile_high: Mapped[float] = mapped_column(Float, default=0.9)
    recent_mae: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ForecastPoint(Base):
    """The forecast for one future instant: point and band (request rate, rps)."""

    __tablename__ = "forecast_points"

    run_id: Mapped[int] = mapped_column(ForeignKey("forecast_runs.id", ondelete="CASCADE"), primary_key=True)
    target_ts: Mapped[datetime] = mapped_column(primary_key=True)
    point: Mapped[float] = mapped_column(Float)
    lower: Mapped[float] = mapped_column(Float)
    upper: Mapped[float] = mapped_column(Float)


class Policy(Base):
    """A version of a deployment's scaling policy; a change adds a version, old versions stay readable."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("deployment_id", "version", name="uq_policies_deployment_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column()
    author: Mapped[str] = mapped_column(String(128), default="system")
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Override(Base):
    """An operator's instruction that beats the policy for a while (pin, floor, freeze, reactive-only, dry-run)."""

    __tablename__ = "overrides"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_overrides_deployment_ends", "deployment_id", "ends_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class ScalingDecision(Base):
    """What the controller decided at one instant, whether it acted, and why."""

    __tablename__ = "scaling_decisions"
    __table_args__ = (
        Index("ix_scaling_decisions_deployment_ts", "deployment_id", "ts"),
        Index("ix_scaling_decisions_ts", "ts"),  # retention
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column()
    current: Mapped[int] = mapped_column(Integer)
    desired: Mapped[int] = mapped_column(Integer)
    applied: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32))
    reasons: Mapped[list[Any]] = mapped_column()
    policy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    controller: Mapped[str | None] = mapped_column(String(255), nullable=True)  # who decided, under which term
    term: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # replicas per capacity pool (controller/placement.py): {"counts": {...}, "leaving": {...}, "unplaced": n}
    placement: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)


class SpotInterruption(Base):
    """A notice that replicas of a pool will be taken back (cloud webhook, node-termination handler, node drain)."""

    __tablename__ = "spot_interruptions"
    __table_args__ = (
        Index("ix_spot_interruptions_deployment_ts", "deployment_id", "ts"),
        Index("ix_spot_interruptions_ts", "ts"),  # retention
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(default=utc_now)  # when the notice came in
    pool: Mapped[str] = mapped_column(String(40))
    replica: Mapped[str | None] = mapped_column(String(253), nullable=True)  # pod / replica id, when known
    count: Mapped[int] = mapped_column(Integer, default=1)
    notice_s: Mapped[float] = mapped_column(Float)
    leaves_at: Mapped[datetime] = mapped_column()
    source: Mapped[str] = mapped_column(String(32), default="api")  # api | kubernetes-drain


class ReplicaEvent(Base):
    """A replica's life event: started, ready (with its startup seconds), failed, stopped."""

    __tablename__ = "replica_events"
    __table_args__ = (
        Index("ix_replica_events_deployment_ts", "deployment_id", "ts"),
        Index("ix_replica_events_ts", "ts"),  # retention
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    replica: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(16))
    ts: Mapped[datetime] = mapped_column(default=utc_now)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class MetricRollup(Base):
    """Per-minute aggregates of one metric of one deployment: what the per-second samples leave behind once they
    expire, and what the forecaster reads for its days of history."""

    __tablename__ = "metric_rollups"
    __table_args__ = (Index("ix_metric_rollups_ts", "ts"),)

    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)  # the minute's start
    mean: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)


class MaintenanceProgress(Base):
    """How far a store-wide maintenance job got (``rollup``: samples before ``done_until`` are in minute rollups
    and may expire). Whichever controller locks the row does the next chunk."""

    __tablename__ = "maintenance_progress"

    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    done_until: Mapped[datetime] = mapped_column()


class ControllerLease(Base):
    """One bucket of the fleet's deployments and the controller holding it (Knative-style sharded leader
    election). ``term`` grows with every change of holder: an action is fenced by the term it was decided under."""

    __tablename__ = "controller_leases"

    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(String(255), nullable=True)
    term: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime | None] = mapped_column(nullable=True)
    renewed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ControllerMember(Base):
    """A running controller process, seen alive at ``last_seen`` (the fair share of buckets is counted from these)."""

    __tablename__ = "controller_members"

    identity: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    buckets: Mapped[int] = mapped_column(Integer)  # the bucket count it shards with (all members must agree)
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_seen: Mapped[datetime] = mapped_column(default=utc_now)


class DeploymentStatus(Base):
    """The live state of one deployment as its owning controller last saw it: read by every controller's API and
    the fleet view, written by the owner after each decision (fenced by its lease term)."""

    __tablename__ = "deployment_status"

    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
    controller: Mapped[str] = mapped_column(String(255))
    term: Mapped[int] = mapped_column(BigInteger, default=0)
    current_replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    desired_replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ready_replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")  # the reason of the step in charge
    forecast_used: Mapped[bool] = mapped_column(Boolean, default=False)
    forecast_upper_rps: Mapped[float | None] = mapped_column(Float, nullable=True)
    planned_utilisation: Mapped[float | None] = mapped_column(Float, nullable=True)  # the band's plan, when used
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    idle_since: Mapped[datetime | None] = mapped_column(nullable=True)  # first second of the current idle stretch
    next_wake_at: Mapped[datetime | None] = mapped_column(nullable=True)  # at zero: the planned predictive wake-up
    error_stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_at: Mapped[datetime | None] = mapped_column(nullable=True)
    errors_total: Mapped[int] = mapped_column(Integer, default=0)
    capacity: Mapped[dict[str, Any]] = mapped_column(default=dict)  # learned capacity: evidence and estimate
