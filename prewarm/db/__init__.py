"""Database schema, engine creation and the metrics store."""

from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.models import (
    Base,
    Deployment,
    ForecastPoint,
    ForecastRun,
    MetricSample,
    Override,
    Policy,
    ReplicaEvent,
    ScalingDecision,
)

__all__ = [
    "Base",
    "Deployment",
    "ForecastPoint",
    "ForecastRun",
    "MetricSample",
    "Override",
    "Policy",
    "ReplicaEvent",
    "ScalingDecision",
    "create_engine_for_url",
    "session_factory",
]
