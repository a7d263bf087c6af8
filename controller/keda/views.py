"""Where the KEDA scaler's values come from: the loop of this controller when it owns the deployment, otherwise the
live status the owning controller stored (any controller behind the Service can answer KEDA)."""

from __future__ import annotations

import grpc
import pydantic
from sqlalchemy import Engine, select

from controller import repository
from controller.api.runtime import ControllerRuntime
from controller.keda.scaler import Lookup, ScalerError, ScalerView
from prewarm.db.engine import session_factory
from prewarm.db.models import Deployment, DeploymentStatus


def store_lookup(engine: Engine, runtime: ControllerRuntime | None) -> Lookup:
    sessions = session_factory(engine)

    def lookup(name: str) -> ScalerView | None:
        with sessions() as session:
            deployment_id = session.scalar(select(Deployment.id).where(Deployment.name == name))
            if deployment_id is None:
                return None
            try:
                _, policy = repository.current_policy(session, deployment_id)
            except (LookupError, pydantic.ValidationError) as error:
                raise ScalerError(grpc.StatusCode.FAILED_PRECONDITION, f"deployment {name!r}: {error}") from error
            def per_replica(planned: float | None) -> float:
                """The load one replica is planned to carry from the forecast: capacity x the utilisation the
                last decision planned the band at (the policy's base plan when the forecast was not used)."""
                return policy.replica_capacity_rps * (planned or policy.forecast_utilisation)

            live = runtime.status(name) if runtime is not None else None
            if live is not None and live.get("desired_replicas") is not None and live.get("decided_at"):
                upper = live.get("forecast_upper_rps")
                return ScalerView(name, int(live["desired_replicas"]), upper,
                                  per_replica(live.get("planned_utilisation")), float(live["decided_at"]))  # fmt: skip
            stored = session.get(DeploymentStatus, deployment_id)
            if stored is None or stored.desired_replicas is None or stored.decided_at is None:
                raise ScalerError(grpc.StatusCode.UNAVAILABLE, f"deployment {name!r} has not been decided yet")
            upper = stored.forecast_upper_rps if stored.forecast_used else None
            return ScalerView(name, stored.desired_replicas, upper, per_replica(stored.planned_utilisation),
                              stored.decided_at.timestamp())  # fmt: skip

    return lookup
