"""Turns the gateway's per-second summaries and replica resource use into metric samples, written in batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from inference.gateway.stats import SecondSummary
from prewarm import metric_names as m

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaUsage:
    """Resource use of one replica process over the last second."""

    replica_id: str
    cpu_percent: float  # 100 = one core fully busy
    memory_bytes: float
    memory_percent: float  # of the machine's memory (a local replica has no other limit)


@dataclass(frozen=True)
class MetricPoint:
    """One value to store; converted to the store's ``Sample`` at write time."""

    deployment: str
    metric: str
    ts: float
    value: float


class ReplicaUsageSampler:
    """CPU and memory of replica processes by pid (psutil); keeps Process objects so cpu_percent has a baseline."""

    def __init__(self) -> None:
        self._processes: dict[int, psutil.Process] = {}

    def sample(self, pids: dict[str, int]) -> list[ReplicaUsage]:
        usage: list[ReplicaUsage] = []
        for replica_id, pid in pids.items():
            process = self._processes.get(pid)
            try:
                if process is None:
                    process = psutil.Process(pid)
                    self._processes[pid] = process
                    process.cpu_percent(None)  # baseline; the first reading is meaningless
                    continue
                with process.oneshot():
                    cpu = process.cpu_percent(None)
                    rss = float(process.memory_info().rss)
                    memory_percent = float(process.memory_percent())
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._processes.pop(pid, None)
                continue
            usage.append(ReplicaUsage(replica_id, cpu, rss, memory_percent))
        for pid in set(self._processes) - set(pids.values()):
            del self._processes[pid]
        return usage


def second_to_points(
    deployment: str, summary: SecondSummary, usage: Sequence[ReplicaUsage]
) -> list[MetricPoint]:
    """The samples of one second: traffic at the gateway and mean resource use over the replicas."""
    values: dict[str, float | None] = {
        m.REQUESTS_RPS: float(summary.requests),
        m.ERRORS_RPS: float(summary.errors),
        m.SERVED_RPS: float(summary.completed),
        m.LATENCY_P50_MS: summary.latency_p50_ms,
        m.LATENCY_P95_MS: summary.latency_p95_ms,
        m.LATENCY_P99_MS: summary.latency_p99_ms,
        m.QUEUE_LENGTH: float(summary.queue_length),
        m.IN_FLIGHT: float(summary.in_flight),
        m.READY_REPLICAS: float(summary.ready_replicas),
    }
    if usage:
        values[m.CPU_PERCENT] = sum(u.cpu_percent for u in usage) / len(usage)
        values[m.MEMORY_BYTES] = sum(u.memory_bytes for u in usage) / len(usage)
        values[m.MEMORY_PERCENT] = sum(u.memory_percent for u in usage) / len(usage)
    return [
        MetricPoint(deployment, name, summary.ts, value)
        for name, value in values.items()
        if value is not None
    ]


class BatchWriter:
    """Buffers points and hands them to ``write`` in one call per flush; keeps (bounded) points when a write fails."""

    def __init__(self, write: Callable[[list[MetricPoint]], Any], max_buffered: int = 100_000) -> None:
        self._write = write
        self._buffer: list[MetricPoint] = []
        self._max_buffered = max_buffered
        self.written_total = 0
        self.failed_writes = 0

    def add(self, points: Iterable[MetricPoint]) -> None:
        self._buffer.extend(points)
        overflow = len(self._buffer) - self._max_buffered
        if overflow > 0:
            log.warning("metrics buffer full: dropping the %d oldest samples", overflow)
            del self._buffer[:overflow]

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        """Write everything buffered in one batch; returns the number written (0 on failure, points kept)."""
        if not self._buffer:
            return 0
        batch, self._buffer = self._buffer, []
        try:
            self._write(batch)
        except Exception:
            self.failed_writes += 1
            log.exception("writing %d metric samples failed; will retry with the next batch", len(batch))
            self._buffer[:0] = batch
            return 0
        self.written_total += len(batch)
        return len(batch)


def store_writer(database_url: str) -> Callable[[list[MetricPoint]], Any]:
    """A ``write`` function for BatchWriter that upserts into the metrics store (idempotent, one transaction)."""
    from prewarm.db.engine import create_engine_for_url
    from prewarm.db.store import MetricsStore, Sample, UnknownDeploymentError

    store = MetricsStore(create_engine_for_url(database_url))

    def write(points: list[MetricPoint]) -> int:
        started = time.perf_counter()
        try:
            written = store.insert_samples([Sample(p.deployment, p.metric, p.ts, p.value) for p in points])
        except UnknownDeploymentError as error:
            # Retrying cannot help until someone creates the deployment: drop the batch, say how to fix it.
            log.warning("dropping %d samples: %s (create the deployment first)", len(points), error)
            return 0
        log.debug("wrote %d samples in %.1f ms", len(points), (time.perf_counter() - started) * 1000)
        return int(written)

    return write
