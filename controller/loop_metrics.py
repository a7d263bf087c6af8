"""The controller's Prometheus metrics: decisions, replica counts, errors, pass timing, lag and leases."""

from __future__ import annotations

import contextlib
import math

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

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

        # Cost (docs/cost.md; the alert rules in deploy/prometheus/alerts.yaml use these names)
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

    def forget(self, deployment: str) -> None:
        """Drop a deployment's gauges (deleted, or now owned by another controller that exports them)."""
        for gauge in (self.desired, self.current, self.ready, self.forecast, self.budget):
            with contextlib.suppress(KeyError):
                gauge.remove(deployment)
        for labelled in (self.cost_per_hour, self.cost_total, self.cost_saving, self.spot_interruptions):
            for labels in [k for k in list(labelled._metrics) if k[0] == deployment]:
                with contextlib.suppress(KeyError):
                    labelled.remove(*labels)

    def set_buckets(self, held: set[int], buckets: int) -> None:
        self.buckets_held.set(len(held))
        for bucket in range(buckets):
            self.bucket_leader.labels(str(bucket)).set(1 if bucket in held else 0)


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
