"""The controller's Prometheus metrics: decisions, replica counts, errors, pass timing, lag and leases, and what
the alert rules need (bounds, forecast state and misses, latency against the SLO, deployments per lease bucket)."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from controller import alert_signals
from controller.decision_values import Decision, ForecastInput, Observations
from controller.policy import ScalingPolicy

logger = logging.getLogger(__name__)

LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ControllerMetrics:
    """Registered once per process in prometheus-client's default registry (served at /metrics); tests pass
    their own registry."""

    _default: ControllerMetrics | None = None

    @classmethod
    def default(cls) -> ControllerMetrics:
        if cls._default is None:
            cls._default = cls(REGISTRY)
        return cls._default

    def __init__(self, registry: CollectorRegistry | None) -> None:
        labels = ["deployment"]
        self.desired = Gauge(
            "prewarm_controller_desired_replicas", "Replicas decided", labels, registry=registry
        )
        self.current = Gauge(
            "prewarm_controller_current_replicas", "Replicas asked of the backend (its spec)", labels,
            registry=registry,
        )  # fmt: skip
        self.ready = Gauge("prewarm_controller_ready_replicas", "Replicas ready", labels, registry=registry)
        self.parked = Gauge(
            "prewarm_controller_parked_replicas",
            "Warm-pool replicas parked (started and warmed, not serving; billed at parked_price_per_replica_hour)",
            labels,
            registry=registry,
        )
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
            "Reconcile errors by deployment and stage (database, policy, metrics, backend, lease, unexpected)",
            ["deployment", "stage"],
            registry=registry,
        )
        self.pass_duration = Histogram(
            "prewarm_controller_pass_duration_seconds",
            "Time one pass of the loop takes to read the due deployments' inputs and dispatch them",
            buckets=PASS_BUCKETS,
            registry=registry,
        )
        self.decision_lag = Histogram(
            "prewarm_controller_decision_lag_seconds",
            "When a decision ran minus when it was due",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.decision_seconds = Histogram(
            "prewarm_controller_reconcile_duration_seconds",
            "Time one deployment's reconcile takes (backend reads, decide(), the scale call)",
            buckets=PASS_BUCKETS,
            registry=registry,
        )
        self.record_duration = Histogram(
            "prewarm_controller_record_duration_seconds",
            "Time writing one pass's finished decisions and statuses to the store (fenced)",
            buckets=PASS_BUCKETS,
            registry=registry,
        )
        self.last_pass = Gauge(
            "prewarm_controller_last_pass_timestamp_seconds",
            "When the loop last completed a pass (epoch seconds)",
            registry=registry,
        )
        self.buckets_held = Gauge(
            "prewarm_controller_buckets_held", "Lease buckets this controller holds", registry=registry
        )
        self.bucket_leader = Gauge(
            "prewarm_controller_bucket_leader",
            "1 for each lease bucket this controller holds (it decides that bucket's deployments)",
            ["bucket"],
            registry=registry,
        )
        self.deployments_owned = Gauge(
            "prewarm_controller_deployments_owned",
            "Deployments in the buckets this controller holds",
            registry=registry,
        )
        self._alerting(registry)
        self._cost(registry)

    def _cost(self, registry: CollectorRegistry | None) -> None:
        """Cost by capacity pool (docs/cost.md; the alert rules in deploy/prometheus/alerts.yaml use these names)."""
        self.cost_per_hour = Gauge(
            "prewarm_cost_per_hour", "Money per hour the replicas cost now, by capacity pool",
            ["deployment", "pool"], registry=registry,
        )  # fmt: skip
        self.cost_total = Gauge(
            "prewarm_cost_total",
            "Money the replicas cost since this controller took the deployment, by capacity pool",
            ["deployment", "pool"],
            registry=registry,
        )
        self.cost_saving = Gauge(
            "prewarm_cost_saving_ratio",
            "1 - cost / baseline since this controller took the deployment; baseline static_peak (the peak held "
            "all along, on demand) or on_demand (the same replicas, all on demand)",
            ["deployment", "baseline"],
            registry=registry,
        )
        self.spot_interruptions = Counter(
            "prewarm_spot_interruptions", "Interruption notices seen, by capacity pool", ["deployment", "pool"],
            registry=registry,
        )  # fmt: skip
        self.budget = Gauge(
            "prewarm_budget_money_per_hour", "The policy's cost budget (money per hour), when set", ["deployment"],
            registry=registry,
        )  # fmt: skip

    def _alerting(self, registry: CollectorRegistry | None) -> None:
        """The per deployment signals of deploy/prometheus/alerts.yaml (docs/alerts.md)."""
        labels = ["deployment"]
        self.min_replicas = Gauge(
            "prewarm_controller_min_replicas", "The policy's min_replicas", labels, registry=registry
        )
        self.max_replicas = Gauge(
            "prewarm_controller_max_replicas", "The policy's max_replicas", labels, registry=registry
        )
        self.dry_run = Gauge(
            "prewarm_controller_dry_run",
            "1 while a dry-run override is active (decisions are logged, not applied)",
            labels,
            registry=registry,
        )
        self.forecast_state = Gauge(
            "prewarm_controller_forecast_state",
            "1 for the state of the forecast at the last decision: used, missing, stale, young (short history), "
            "rejected (by decide()), disabled (reactive-only override); 0 for the others",
            ["deployment", "state"],
            registry=registry,
        )
        self.forecast_age = Gauge(
            "prewarm_controller_forecast_age_seconds",
            "Age of the newest stored forecast at the last decision (NaN without one)",
            labels,
            registry=registry,
        )
        self.forecast_max_age = Gauge(
            "prewarm_controller_forecast_max_age_seconds",
            "The policy's forecast_max_age_s: an older forecast is ignored",
            labels,
            registry=registry,
        )
        self.forecast_checked = Counter(
            "prewarm_controller_forecast_checked_seconds",
            "Seconds with an observed request rate and a forecast interval covering them",
            labels,
            registry=registry,
        )
        self.forecast_exceeded = Counter(
            "prewarm_controller_forecast_exceeded_seconds",
            "Of the checked seconds, those whose observed rate was above the forecast's upper band",
            labels,
            registry=registry,
        )
        self.latency_p95 = Gauge(
            "prewarm_controller_latency_p95_seconds",
            "Newest per-second p95 latency the last decision saw (NaN when not measured)",
            labels,
            registry=registry,
        )
        self.latency_slo = Gauge(
            "prewarm_controller_latency_slo_seconds",
            "The policy's p95 latency SLO (capacity_latency_slo_ms)",
            labels,
            registry=registry,
        )
        self.latency_measured = Counter(
            "prewarm_controller_latency_measured_seconds",
            "Seconds with a measured p95 latency",
            labels,
            registry=registry,
        )
        self.latency_violating = Counter(
            "prewarm_controller_latency_slo_violation_seconds",
            "Of the measured seconds, those whose p95 latency was over the SLO",
            labels,
            registry=registry,
        )
        self.bucket_deployments = Gauge(
            "prewarm_controller_bucket_deployments",
            "Deployments hashed into each lease bucket (every controller sees the whole list)",
            ["bucket"],
            registry=registry,
        )
        self._watched: dict[str, _Watched] = {}
        self._watched_lock = threading.Lock()
        self._failed: set[str] = set()  # deployments whose export failed once (logged)

    def _watch(self, deployment: str) -> _Watched:
        with self._watched_lock:
            watched = self._watched.get(deployment)
        if watched is None:  # the labelled children, looked up once per deployment (labels() is the slow part)
            per_deployment = (
                self.min_replicas, self.max_replicas, self.dry_run, self.forecast_age, self.forecast_max_age,
                self.latency_p95, self.latency_slo, self.forecast_checked, self.forecast_exceeded,
                self.latency_measured, self.latency_violating,
            )  # fmt: skip
            watched = _Watched(
                children=tuple(metric.labels(deployment) for metric in per_deployment),
                states={value: self.forecast_state.labels(deployment, value) for value in alert_signals.FORECAST_STATES},
            )
            with self._watched_lock:
                watched = self._watched.setdefault(deployment, watched)
        return watched

    def observe(
        self,
        deployment: str,
        policy: ScalingPolicy,
        observations: Observations,
        forecast: ForecastInput | None,
        decision: Decision,
        now: float,
    ) -> None:
        """Export what the alert rules read about one decision (called by the worker that made it; one worker at a
        time per deployment). A failure here costs these series only, never the decision: logged once per
        deployment and counted as an ``unexpected`` error."""
        try:
            self._observe(deployment, policy, observations, forecast, decision, now)
        except Exception:
            self.errors.labels(deployment, "unexpected").inc()
            if deployment not in self._failed:
                self._failed.add(deployment)
                logger.exception("deployment %s: exporting the alert metrics failed", deployment)

    def _observe(
        self,
        deployment: str,
        policy: ScalingPolicy,
        observations: Observations,
        forecast: ForecastInput | None,
        decision: Decision,
        now: float,
    ) -> None:
        watched = self._watch(deployment)
        lo, hi, dry, age, max_age, p95, slo_gauge, checked, exceeded, measured, violating = watched.children
        if policy is not watched.policy:  # the policy's figures, again only when it changed
            lo.set(policy.min_replicas)
            hi.set(policy.max_replicas)
            max_age.set(policy.forecast_max_age_s)
            slo_gauge.set(policy.capacity_latency_slo_ms / 1000.0)
            watched.policy = policy
        dry.set(1 if alert_signals.dry_run(observations, now) else 0)
        state = alert_signals.forecast_state(policy, observations, forecast, decision, now)
        if state != watched.state:
            for value, child in watched.states.items():
                child.set(1 if value == state else 0)
            watched.state = state
        age.set(math.nan if forecast is None else now - forecast.created_at)
        p95.set(alert_signals.latest(observations.latency_p95_ms) / 1000.0)
        misses = alert_signals.forecast_misses(observations, forecast, watched.forecast_through)
        slo = alert_signals.slo_violations(observations, policy.capacity_latency_slo_ms, watched.latency_through)
        checked.inc(misses.judged)
        exceeded.inc(misses.bad)
        measured.inc(slo.judged)
        violating.inc(slo.bad)
        watched.forecast_through, watched.latency_through = misses.through, slo.through

    def set_bucket_deployments(self, counts: dict[int, int], buckets: int) -> None:
        for bucket in range(buckets):
            self.bucket_deployments.labels(str(bucket)).set(counts.get(bucket, 0))

    def forget(self, deployment: str) -> None:
        """Drop a deployment's series (deleted, or now owned by another controller that exports them)."""
        for metric in (
            self.desired, self.current, self.ready, self.parked, self.forecast, self.budget, self.min_replicas, self.max_replicas,
            self.dry_run, self.forecast_age, self.forecast_max_age, self.forecast_checked, self.forecast_exceeded,
            self.latency_p95, self.latency_slo, self.latency_measured, self.latency_violating,
        ):  # fmt: skip
            with contextlib.suppress(KeyError):
                metric.remove(deployment)
        for labelled in (self.cost_per_hour, self.cost_total, self.cost_saving, self.spot_interruptions):
            for labels in [k for k in list(labelled._metrics) if k[0] == deployment]:
                with contextlib.suppress(KeyError):
                    labelled.remove(*labels)
        for value in alert_signals.FORECAST_STATES:
            with contextlib.suppress(KeyError):
                self.forecast_state.remove(deployment, value)
        with self._watched_lock:
            self._watched.pop(deployment, None)
        self._failed.discard(deployment)

    def set_buckets(self, held: set[int], buckets: int) -> None:
        self.buckets_held.set(len(held))
        for bucket in range(buckets):
            self.bucket_leader.labels(str(bucket)).set(1 if bucket in held else 0)


@dataclass
class _Watched:
    """One deployment's alert series (``children`` in the order ``observe`` unpacks them) and what it remembers:
    the forecast state exported last, and up to where the seconds of its windows were counted."""

    children: tuple[Any, ...]
    states: dict[str, Any]
    state: str | None = None
    policy: ScalingPolicy | None = None
    forecast_through: float | None = None
    latency_through: float | None = None


def histogram_quantile(buckets: dict[float, float], total: float, q: float) -> float:
    """Prometheus' histogram_quantile over cumulative ``buckets`` (upper bound -> count): linear interpolation
    inside the bucket that holds the q-th observation; NaN without observations."""
    if total <= 0:
        return math.nan
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in sorted(buckets):
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            width = count - previous_count
            return previous_bound + (bound - previous_bound) * ((rank - previous_count) / width if width else 1.0)
        previous_bound, previous_count = bound, count
    return previous_bound


def decision_lag_histogram(metrics_text: str) -> tuple[dict[float, float], float]:
    """The decision-lag histogram (cumulative buckets and count) from a controller's /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[float, float] = {}
    count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "prewarm_controller_decision_lag_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return buckets, count
