"""The reconcile loop: the thin shell around ``decide()``.

Every ``decision_interval_s`` per deployment: read the policy, overrides, latest forecast and recent observations,
call ``decide()``, act through the deployment's backend, and record the decision (every change, and an unchanged
one at most once per ``record_unchanged_every_s``). Anything that fails on the way (database, metrics source,
backend) is logged and the current replica count is kept; the loop itself never stops on an error.

Restart: the decision state (the scale-down stabilisation window) is rebuilt from the decisions stored within the
window, so a restarted controller does not scale down earlier than the one that crashed would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from controller import repository
from controller.backends.base import BackendError, ReplicaBackend, ReplicaState
from controller.backends.factory import build_backend
from controller.decide import Decision, DecisionState, ForecastInput, Observations, decide
from controller.sources.window import ObservationWindow
from prewarm import metric_names as m
from prewarm.db.engine import session_factory
from prewarm.db.models import Deployment, ScalingDecision

logger = logging.getLogger(__name__)

COUNTED_STATES = (ReplicaState.STARTING, ReplicaState.READY)


class MetricsSource(Protocol):
    """Where recent per-second observations come from (the metrics store, or Prometheus)."""

    def window(
        self, deployment: str, end: datetime | float, duration_s: float, step_s: float = 1.0
    ) -> ObservationWindow: ...


BackendFactory = Callable[[Deployment], ReplicaBackend]


@dataclass
class DeploymentRuntime:
    """What the loop keeps in memory for one deployment between ticks."""

    name: str
    deployment_id: int
    backend: ReplicaBackend
    backend_key: str
    state: DecisionState
    next_decision_at: float = 0.0
    last_recorded_at: float = 0.0
    last_decision: Decision | None = None
    last_recorded_desired: int | None = None
    last_recorded_source: str | None = None
    current: int = 0
    ready: int = 0
    forecast_upper_rps: float | None = None
    errors: list[str] = field(default_factory=list)


class ControllerMetrics:
    """Prometheus metrics the controller exports about its decisions."""

    _default: ControllerMetrics | None = None

    @classmethod
    def default(cls) -> ControllerMetrics:
        """The process-wide instance, registered in prometheus-client's default registry (served at /metrics)."""
        if cls._default is None:
            cls._default = cls(REGISTRY)
        return cls._default

    def __init__(self, registry: CollectorRegistry | None) -> None:
        labels = ["deployment"]
        self.desired = Gauge(
            "prewarm_controller_desired_replicas", "Replicas decided", labels, registry=registry
        )
        self.current = Gauge(
            "prewarm_controller_current_replicas", "Replicas asked for", labels, registry=registry
        )
        self.ready = Gauge("prewarm_controller_ready_replicas", "Replicas ready", labels, registry=registry)
        self.forecast = Gauge(
            "prewarm_controller_forecast_upper_rps",
            "Upper forecast band over the decision window (NaN when not used)",
            labels,
            registry=registry,
        )
        self.decisions = Counter(
            "prewarm_controller_decisions",
            "Decisions made, by the step that set the count",
            ["deployment", "source"],
            registry=registry,
        )
        self.errors = Counter(
            "prewarm_controller_errors",
            "Reconcile errors, by stage",
            ["deployment", "stage"],
            registry=registry,
        )


class ReconcileLoop:
    """Reconciles every deployment in the store; ``reconcile_once`` is one blocking pass (the async runner calls it
    in a worker thread so the API never waits on it)."""

    def __init__(
        self,
        engine: Engine,
        source: MetricsSource,
        *,
        backend_factory: BackendFactory | None = None,
        state_root: Path = Path("run"),
        record_unchanged_every_s: float = 60.0,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)
        self.source = source
        self.state_root = state_root
        self.backend_factory = backend_factory or self._default_backend
        self.record_unchanged_every_s = record_unchanged_every_s
        self.metrics = metrics or ControllerMetrics.default()
        self.runtimes: dict[str, DeploymentRuntime] = {}
        self.database_ok = True

    def _default_backend(self, deployment: Deployment) -> ReplicaBackend:
        return build_backend(
            name=deployment.name,
            model=deployment.model,
            backend=deployment.backend,
            backend_config=dict(deployment.backend_config or {}),
            min_replicas=deployment.min_replicas,
            engine=self.engine,
            state_root=self.state_root,
        )

    # -- one pass ------------------------------------------------------------------------------------------

    def reconcile_once(self, now: float | None = None) -> dict[str, Decision]:
        """Decide (and act) for every deployment that is due; returns the decisions made in this pass."""
        now = time.time() if now is None else now
        try:
            with self.sessions() as session:
                deployments = list(session.scalars(select(Deployment).order_by(Deployment.name)))
        except SQLAlchemyError as error:
            self._database_down(error)
            return {}
        self._database_up()
        self._forget_deleted({d.name for d in deployments})
        decisions: dict[str, Decision] = {}
        for deployment in deployments:
            runtime = self._runtime_for(deployment, now)
            if runtime is None or now < runtime.next_decision_at:
                continue
            decision = self._reconcile_deployment(deployment, runtime, now)
            if decision is not None:
                decisions[deployment.name] = decision
        return decisions

    def _reconcile_deployment(
        self, deployment: Deployment, runtime: DeploymentRuntime, now: float
    ) -> Decision | None:
        name = deployment.name
        try:
            with self.sessions() as session:
                policy_version, policy = repository.current_policy(session, deployment.id)
                overrides = repository.override_values(
                    session, deployment.id, datetime.fromtimestamp(now, UTC)
                )
                latest = repository.latest_forecast(session, deployment.id)
                startup_s = repository.replica_startup_s(session, deployment.id)
        except SQLAlchemyError as error:
            self._database_down(error)
            self.metrics.errors.labels(name, "database").inc()
            return None  # keep the current count: nothing is decided without the policy
        runtime.next_decision_at = now + policy.decision_interval_s

        try:
            replicas = runtime.backend.replicas()
            current = sum(1 for replica in replicas if replica.state in COUNTED_STATES)
            ready = runtime.backend.ready_count()
        except BackendError as error:
            logger.error(
                "deployment %s: backend %s cannot report replicas: %s", name, runtime.backend.name, error
            )
            self.metrics.errors.labels(name, "backend").inc()
            return None
        runtime.current, runtime.ready = current, ready

        window = self.source.window(name, now, max(policy.stable_window_s, policy.panic_window_s))
        observations = observations_from_window(window, current, ready, startup_s, tuple(overrides))
        forecast = forecast_input(latest) if latest is not None else None
        decision = decide(policy, observations, forecast, runtime.state, now)
        runtime.state = decision.new_state
        runtime.last_decision = decision
        runtime.forecast_upper_rps = decision.forecast_upper_rps

        applied = False
        if decision.act and decision.desired != current:
            try:
                runtime.backend.scale_to(decision.desired)
                applied = True
                logger.info(
                    "deployment %s: scaled %d -> %d (%s): %s",
                    name, current, decision.desired, decision.source, "; ".join(decision.reason_texts[-3:]),
                )  # fmt: skip
            except BackendError as error:
                logger.error("deployment %s: scale to %d failed: %s", name, decision.desired, error)
                self.metrics.errors.labels(name, "backend").inc()
        self._export(name, decision, current, ready)
        self._record(deployment.id, runtime, decision, current, applied, policy_version, now)
        return decision

    def _record(
        self,
        deployment_id: int,
        runtime: DeploymentRuntime,
        decision: Decision,
        current: int,
        applied: bool,
        policy_version: int,
        now: float,
    ) -> None:
        changed = (
            decision.desired != current
            or decision.desired != runtime.last_recorded_desired
            or decision.source != runtime.last_recorded_source  # e.g. a pin ended: say so at once
        )
        if not changed and now - runtime.last_recorded_at < self.record_unchanged_every_s:
            return
        try:
            with self.sessions() as session:
                repository.record_decision(
                    session,
                    deployment_id,
                    ts=datetime.fromtimestamp(now, UTC),
                    current=current,
                    desired=decision.desired,
                    applied=applied,
                    source=decision.source,
                    reasons=decision.reason_texts,
                    policy_version=policy_version,
                )
                session.commit()
            runtime.last_recorded_at = now
            runtime.last_recorded_desired = decision.desired
            runtime.last_recorded_source = decision.source
        except SQLAlchemyError as error:
            self._database_down(error)

    def _export(self, name: str, decision: Decision, current: int, ready: int) -> None:
        self.metrics.desired.labels(name).set(decision.desired)
        self.metrics.current.labels(name).set(current)
        self.metrics.ready.labels(name).set(ready)
        upper = decision.forecast_upper_rps
        self.metrics.forecast.labels(name).set(float("nan") if upper is None else upper)
        self.metrics.decisions.labels(name, decision.source).inc()

    # -- deployments coming and going ----------------------------------------------------------------------

    def _runtime_for(self, deployment: Deployment, now: float) -> DeploymentRuntime | None:
        key = f"{deployment.backend}:{sorted((deployment.backend_config or {}).items())}:{deployment.model}"
        runtime = self.runtimes.get(deployment.name)
        if runtime is not None and runtime.backend_key == key and runtime.deployment_id == deployment.id:
            return runtime
        if runtime is not None:
            logger.info("deployment %s: backend settings changed, rebuilding its backend", deployment.name)
            runtime.backend.close()
        try:
            backend = self.backend_factory(deployment)
        except (BackendError, OSError, ValueError) as error:
            logger.error(
                "deployment %s: cannot build backend %s: %s", deployment.name, deployment.backend, error
            )
            self.metrics.errors.labels(deployment.name, "backend").inc()
            return None
        runtime = DeploymentRuntime(
            name=deployment.name,
            deployment_id=deployment.id,
            backend=backend,
            backend_key=key,
            state=self._resume_state(deployment.id, now),
        )
        self.runtimes[deployment.name] = runtime
        return runtime

    def _resume_state(self, deployment_id: int, now: float) -> DecisionState:
        """Rebuild the stabilisation window from stored decisions (conservative: their desired counts)."""
        try:
            with self.sessions() as session:
                _, policy = repository.current_policy(session, deployment_id)
                since = datetime.fromtimestamp(now - policy.scale_down_stabilisation_s, UTC)
                rows = session.execute(
                    select(ScalingDecision.ts, ScalingDecision.desired)
                    .where(ScalingDecision.deployment_id == deployment_id, ScalingDecision.ts >= since)
                    .order_by(ScalingDecision.ts)
                ).all()
        except (SQLAlchemyError, LookupError):
            return DecisionState()
        return DecisionState(recommendations=tuple((ts.timestamp(), desired) for ts, desired in rows))

    def _forget_deleted(self, names: set[str]) -> None:
        for name in list(self.runtimes):
            if name not in names:
                logger.info("deployment %s was deleted: releasing its backend", name)
                self.runtimes.pop(name).backend.close()

    def _database_down(self, error: Exception) -> None:
        if self.database_ok:
            logger.error("database unreachable, keeping current replica counts until it returns: %s", error)
        self.database_ok = False

    def _database_up(self) -> None:
        if not self.database_ok:
            logger.info("database reachable again, reconciling resumes")
        self.database_ok = True

    # -- running -------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, tick_s: float = 1.0) -> None:
        """Reconcile until ``stop`` is set; each pass runs in a worker thread."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.reconcile_once)
            except Exception:  # a bug in one pass must not end the loop: log it and go on
                logger.exception("reconcile pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick_s)

    def close(self) -> None:
        """Release every backend (local replicas are stopped)."""
        for runtime in self.runtimes.values():
            runtime.backend.close()
        self.runtimes.clear()

    def status(self, name: str) -> dict[str, Any] | None:
        """Live view of one deployment for the API: current, desired, ready replicas and the last decision."""
        runtime = self.runtimes.get(name)
        if runtime is None:
            return None
        decision = runtime.last_decision
        return {
            "current_replicas": runtime.current,
            "ready_replicas": runtime.ready,
            "desired_replicas": decision.desired if decision else None,
            "source": decision.source if decision else None,
            "reasons": decision.reason_texts if decision else [],
            "forecast_upper_rps": runtime.forecast_upper_rps,
        }


def observations_from_window(
    window: ObservationWindow,
    current: int,
    ready: int,
    replica_startup_s: float | None,
    overrides: tuple[Any, ...],
) -> Observations:
    """Turn a metrics window into ``decide()``'s observations (the newest finite sample of any metric dates them)."""
    measured = np.zeros(window.timestamps.shape, dtype=bool)
    for values in window.values.values():
        measured |= np.isfinite(values)
    seconds = np.flatnonzero(measured)
    last_sample_ts = float(window.timestamps[seconds[-1]]) if seconds.size else None
    return Observations(
        current_replicas=current,
        ready_replicas=ready,
        rps=window.get(m.REQUESTS_RPS),
        latency_p95_ms=window.get(m.LATENCY_P95_MS),
        cpu_percent=window.get(m.CPU_PERCENT),
        memory_percent=window.get(m.MEMORY_PERCENT),
        queue_length=window.get(m.QUEUE_LENGTH),
        last_sample_ts=last_sample_ts,
        replica_startup_s=replica_startup_s,
        overrides=overrides,
    )


def forecast_input(latest: tuple[Any, list[Any]]) -> ForecastInput | None:
    """A stored forecast run and its points as ``decide()`` takes them (None when it has no points)."""
    run, points = latest
    if not points:
        return None
    detail = run.detail or {}
    peak = detail.get("history_peak_rps")
    points_seen = detail.get("history_points")
    return ForecastInput(
        created_at=run.created_at.timestamp(),
        target_ts=np.array([p.target_ts.timestamp() for p in points]),
        upper=np.array([p.upper for p in points]),
        point=np.array([p.point for p in points]),
        lower=np.array([p.lower for p in points]),
        step_s=run.step_s,
        model=run.model_name,
        history_peak_rps=float(peak) if peak is not None else None,
        history_s=float(points_seen) * run.step_s if points_seen is not None else None,
    )
