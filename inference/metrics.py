"""Prometheus metrics of one replica; multiprocess-safe when several workers share the port.

With several workers the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports prometheus_client, and
``/metrics`` aggregates every worker's values (gauges by the mode noted on each). CPU and memory are those of the
whole replica process tree (supervisor and workers), read with psutil at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class ProcessTreeCollector(Collector):
    """CPU seconds and resident memory summed over the replica's root process and its children."""

    def __init__(self, root_pid: int) -> None:
        self._root_pid = root_pid

    def collect(self) -> Iterator[Metric]:
        try:
            root = psutil.Process(self._root_pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            processes = [psutil.Process()]
        cpu_s, rss = 0.0, 0
        for process in processes:
            try:
                times = process.cpu_times()
                cpu_s += times.user + times.system
                rss += process.memory_info().rss
            except psutil.Error:
                continue
        cpu = CounterMetricFamily(
            "prewarm_replica_cpu_seconds", "CPU seconds used by the replica's processes"
        )
        cpu.add_metric([], cpu_s)
        memory = GaugeMetricFamily(
            "prewarm_replica_memory_bytes", "Resident memory of the replica's processes"
        )
        memory.add_metric([], rss)
        processes_gauge = GaugeMetricFamily("prewarm_replica_processes", "Processes of the replica")
        processes_gauge.add_metric([], len(processes))
        yield from (cpu, memory, processes_gauge)


class ReplicaMetrics:
    """The replica's collectors, in their own registry so several apps can live in one test process."""

    def __init__(self, model: str, root_pid: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "prewarm_replica_requests",
            "Requests served, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "prewarm_replica_request_duration_seconds",
            "Infer request latency inside the server",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.in_flight = Gauge(
            "prewarm_replica_in_flight_requests",
            "Infer requests being served",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.queue_depth = Gauge(
            "prewarm_replica_queue_depth",
            "Infer requests waiting for a batch",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "prewarm_replica_batch_size", "Rows per onnxruntime run", buckets=BATCH_BUCKETS, registry=registry
        )
        self.model_load_s = Gauge(
            "prewarm_replica_model_load_seconds",
            "Seconds to create the onnxruntime session",
            ["model"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.warmup_s = Gauge(
            "prewarm_replica_warmup_seconds",
            "Seconds of warm-up inferences before ready",
            ["model"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.startup_s = Gauge(
            "prewarm_replica_startup_seconds",
            "Seconds from replica process start to ready (slowest worker)",
            ["model"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.ready = Gauge(
            "prewarm_replica_ready",
            "1 when this worker is warmed and serving",
            ["model"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.ready.labels(model).set(0)
        # cached children: label lookups cost more than the increments themselves
        self.infer_ok = self.requests.labels("infer", "200")
        self._root_pid = root_pid
        self._status_children: dict[tuple[str, int], Counter] = {}

    def count(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        child = self._status_children.get(key)
        if child is None:
            child = self._status_children[key] = self.requests.labels(endpoint, str(status))
        child.inc()

    def exposition(self) -> bytes:
        """The text format for ``/metrics``."""
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        tree = ProcessTreeCollector(self._root_pid)
        return generate_latest(registry) + generate_latest(_Single(tree))


class _Single(CollectorRegistry):
    """A throwaway registry around one collector (so the tree collector is never registered twice)."""

    def __init__(self, collector: Collector) -> None:
        super().__init__(auto_describe=False)
        self.register(collector)


def mark_worker_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges from the multiprocess aggregation."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid)
