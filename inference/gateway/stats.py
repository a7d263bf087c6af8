"""Per-second traffic statistics of the gateway: cheap to record per request, summarised once a second."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# Prometheus histogram buckets for request duration, seconds.
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(frozen=True)
class SecondSummary:
    """One second of traffic at the gateway (``ts`` is the second's start, epoch seconds)."""

    ts: float
    requests: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    queue_length: int
    in_flight: int
    ready_replicas: int
    completed: int = 0  # requests answered in the second (their latencies are the percentiles above)


@dataclass
class TrafficStats:
    """Counters since start plus the current second's latencies; ``close_second`` summarises and resets the second."""

    requests_total: int = 0
    errors_total: int = 0
    retries_total: int = 0
    rejected_total: int = 0
    duration_sum_s: float = 0.0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_S) + 1))
    last_second: SecondSummary | None = None
    _second_requests: int = 0
    _second_errors: int = 0
    _second_latencies_s: list[float] = field(default_factory=list)

    def record_arrival(self) -> None:
        self.requests_total += 1
        self._second_requests += 1

    def record_completion(self, duration_s: float, error: bool) -> None:
        self._second_latencies_s.append(duration_s)
        self.duration_sum_s += duration_s
        self.bucket_counts[bisect.bisect_left(DURATION_BUCKETS_S, duration_s)] += 1
        if error:
            self.errors_total += 1
            self._second_errors += 1

    def close_second(
        self, ts: float, queue_length: int, in_flight: int, ready_replicas: int
    ) -> SecondSummary:
        """Summarise the second that started at ``ts`` and start a new one."""
        latencies = self._second_latencies_s
        if latencies:
            p50, p95, p99 = (float(v) * 1000.0 for v in np.percentile(latencies, [50, 95, 99]))
            summary = SecondSummary(
                ts, self._second_requests, self._second_errors, p50, p95, p99, queue_length, in_flight,
                ready_replicas, len(latencies),
            )  # fmt: skip
        else:
            summary = SecondSummary(
                ts, self._second_requests, self._second_errors, None, None, None, queue_length, in_flight,
                ready_replicas,
            )  # fmt: skip
        self._second_requests = 0
        self._second_errors = 0
        self._second_latencies_s = []
        self.last_second = summary
        return summary


@dataclass(frozen=True)
class ReplicaGauges:
    """What /metrics shows per replica."""

    replica_id: str
    healthy: bool
    in_flight: int
    cpu_percent: float | None = None
    memory_bytes: float | None = None


def render_prometheus(
    deployment: str,
    stats: TrafficStats,
    queue_length: int,
    in_flight: int,
    ready_replicas: int,
    replicas: list[ReplicaGauges],
) -> str:
    """The Prometheus text exposition (format 0.0.4) of the gateway's metrics."""
    label = f'deployment="{deployment}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{{{labels}}} {value:g}" for labels, value in samples)

    metric("prewarm_gateway_requests_total", "counter", "Requests received.", [(label, stats.requests_total)])
    metric(
        "prewarm_gateway_errors_total",
        "counter",
        "Requests answered with a 5xx.",
        [(label, stats.errors_total)],
    )
    metric("prewarm_gateway_retries_total", "counter", "Requests retried on another replica.",
           [(label, stats.retries_total)])  # fmt: skip
    metric("prewarm_gateway_rejected_total", "counter", "Requests refused with 503 (queue full or no replica).",
           [(label, stats.rejected_total)])  # fmt: skip
    metric(
        "prewarm_gateway_queue_length", "gauge", "Requests waiting for a replica.", [(label, queue_length)]
    )
    metric("prewarm_gateway_in_flight", "gauge", "Requests being served by replicas.", [(label, in_flight)])
    metric(
        "prewarm_gateway_ready_replicas", "gauge", "Replicas receiving traffic.", [(label, ready_replicas)]
    )
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(DURATION_BUCKETS_S, stats.bucket_counts, strict=False):
        cumulative += count
        buckets.append((f'{label},le="{bound:g}"', cumulative))
    cumulative += stats.bucket_counts[-1]
    buckets.append((f'{label},le="+Inf"', cumulative))
    name = "prewarm_gateway_request_duration_seconds"
    lines.append(f"# HELP {name} Request duration at the gateway.")
    lines.append(f"# TYPE {name} histogram")
    lines.extend(f"{name}_bucket{{{labels}}} {value:g}" for labels, value in buckets)
    lines.append(f"{name}_sum{{{label}}} {stats.duration_sum_s:g}")
    lines.append(f"{name}_count{{{label}}} {cumulative}")
    last = stats.last_second
    if last is not None and last.latency_p50_ms is not None:
        quantiles = [
            ("0.5", last.latency_p50_ms),
            ("0.95", last.latency_p95_ms),
            ("0.99", last.latency_p99_ms),
        ]
        metric("prewarm_gateway_last_second_latency_ms", "gauge", "Latency quantiles of the last full second.",
               [(f'{label},quantile="{q}"', v or 0.0) for q, v in quantiles])  # fmt: skip
    metric("prewarm_replica_in_flight", "gauge", "Requests in flight per replica.",
           [(f'{label},replica="{r.replica_id}"', r.in_flight) for r in replicas])  # fmt: skip
    metric("prewarm_replica_healthy", "gauge", "1 if the replica receives traffic.",
           [(f'{label},replica="{r.replica_id}"', int(r.healthy)) for r in replicas])  # fmt: skip
    metric("prewarm_replica_cpu_percent", "gauge", "Replica process CPU, 100 = one core.",
           [(f'{label},replica="{r.replica_id}"', r.cpu_percent) for r in replicas if r.cpu_percent is not None])  # fmt: skip
    metric("prewarm_replica_memory_bytes", "gauge", "Replica process resident memory.",
           [(f'{label},replica="{r.replica_id}"', r.memory_bytes) for r in replicas if r.memory_bytes is not None])  # fmt: skip
    return "\n".join(lines) + "\n"


def render_activator(deployment: str, activator: ActivatorCounters) -> str:
    """The activator's gauges and counters (inference/gateway/activator.py) in the Prometheus text format."""
    label = f'deployment="{deployment}"'
    rows = (
        ("prewarm_gateway_activator_held", "gauge", "Requests held now while no replica is ready.", activator.held),
        ("prewarm_gateway_activator_held_total", "counter", "Requests the activator held.", activator.held_total),
        ("prewarm_gateway_activator_refused_total", "counter", "Requests refused: the activator was full.",
         activator.refused_total),
        ("prewarm_gateway_activator_timed_out_total", "counter", "Held requests that waited their longest.",
         activator.timed_out_total),
        ("prewarm_gateway_activator_pushes_total", "counter", "Activation pushes sent to the controller.",
         activator.pushes_total),
        ("prewarm_gateway_activator_push_failures_total", "counter", "Activation pushes that failed.",
         activator.push_failures_total),
    )  # fmt: skip
    lines: list[str] = []
    for name, kind, help_text, value in rows:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{{{label}}} {value:g}"]
    return "\n".join(lines) + "\n"


class ActivatorCounters(Protocol):
    """What ``render_activator`` reads from the activator."""

    held: int
    held_total: int
    refused_total: int
    timed_out_total: int
    pushes_total: int
    push_failures_total: int
