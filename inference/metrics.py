"""Prometheus metrics of one replica, cheap on the hot path and summed over worker processes.

The hot path only bumps plain Python numbers (no locks, no mmap: prometheus-client's multiprocess values cost
several µs per update, as much as the rest of a request). ``/metrics`` renders them with prometheus-client's
metric families. With several workers each one writes a snapshot of its numbers to
``$_PREWARM_REPLICA_METRICS_DIR/<pid>.json`` twice a second, and the worker that answers a scrape sums the other
workers' latest snapshots with its own live numbers (so other workers' figures are at most 0.5 s old). Counters of
a stopped worker keep counting in the sum (its last snapshot stays); its gauges are dropped.
CPU and memory are those of the whole replica process tree (supervisor and workers), read with psutil at scrape.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

METRICS_DIR_ENV = "_PREWARM_REPLICA_METRICS_DIR"
ROOT_PID_ENV = "_PREWARM_REPLICA_ROOT_PID"
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
PUBLISH_INTERVAL_S = 0.5


class ReplicaMetrics:
    """One worker's numbers; ``exposition`` renders the replica's (all workers') text format."""

    def __init__(self, model: str, root_pid: int | None = None, metrics_dir: str | None = None) -> None:
        self.model = model
        self.root_pid = root_pid or int(os.environ.get(ROOT_PID_ENV, os.getpid()))
        self.metrics_dir = metrics_dir if metrics_dir is not None else os.environ.get(METRICS_DIR_ENV)
        self.requests: dict[int, int] = {}  # HTTP infer requests by status
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # last: +Inf
        self.latency_sum_s = 0.0
        self.grpc_requests: dict[int, int] = {}  # gRPC infer requests by the HTTP status their gRPC code stands for
        self.grpc_latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.grpc_latency_sum_s = 0.0
        self.batch_counts = [0] * (len(BATCH_BUCKETS) + 1)
        self.batch_rows = 0
        self.in_flight = 0
        self.queue_depth = 0
        self.model_load_s = 0.0
        self.warmup_s = 0.0
        self.startup_s = 0.0
        self.ready = 0

    # --- hot path ------------------------------------------------------------------------------------------
    def record(self, status: int, seconds: float) -> None:
        """One infer request answered with ``status`` after ``seconds``."""
        requests = self.requests
        requests[status] = requests.get(status, 0) + 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds

    def record_grpc(self, status: int, seconds: float) -> None:
        """One gRPC ModelInfer answered with the gRPC code that stands for HTTP ``status`` after ``seconds``."""
        self.grpc_requests[status] = self.grpc_requests.get(status, 0) + 1
        self.grpc_latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.grpc_latency_sum_s += seconds

    def observe_rows(self, rows: int) -> None:
        """One onnxruntime run over ``rows`` rows."""
        self.batch_counts[bisect.bisect_left(BATCH_BUCKETS, rows)] += 1
        self.batch_rows += rows

    def add_queue_depth(self, delta: int) -> None:
        self.queue_depth += delta

    # --- across workers ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": {str(status): count for status, count in self.requests.items()},
            "latency_counts": self.latency_counts,
            "latency_sum_s": self.latency_sum_s,
            "grpc_requests": {str(status): count for status, count in self.grpc_requests.items()},
            "grpc_latency_counts": self.grpc_latency_counts,
            "grpc_latency_sum_s": self.grpc_latency_sum_s,
            "batch_counts": self.batch_counts,
            "batch_rows": self.batch_rows,
            "in_flight": self.in_flight,
            "queue_depth": self.queue_depth,
            "model_load_s": self.model_load_s,
            "warmup_s": self.warmup_s,
            "startup_s": self.startup_s,
            "alive": True,
        }

    def publish(self, final: bool = False) -> None:
        """Write this worker's snapshot for the others (atomically); ``final`` marks the worker stopped."""
        if not self.metrics_dir:
            return
        snapshot = self.snapshot()
        if final:
            snapshot.update(in_flight=0, queue_depth=0, alive=False)
        path = Path(self.metrics_dir, f"{os.getpid()}.json")
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(snapshot))
        temporary.replace(path)

    def _all_snapshots(self) -> list[dict[str, Any]]:
        snapshots = [self.snapshot()]
        if self.metrics_dir:
            own = f"{os.getpid()}.json"
            for path in Path(self.metrics_dir).glob("*.json"):
                if path.name == own:
                    continue
                try:
                    snapshots.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    continue
        return snapshots

    def exposition(self, replica_ready: bool) -> bytes:
        """The text format for ``/metrics``."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self, self._all_snapshots(), replica_ready))
        registry.register(ProcessTreeCollector(self.root_pid))
        return generate_latest(registry)


def _sum_lists(lists: list[list[int]]) -> list[int]:
    return [sum(values) for values in zip(*lists, strict=True)]


def _histogram(
    name: str,
    documentation: str,
    bounds: tuple[float, ...],
    series: dict[tuple[str, ...], tuple[list[int], float]],
    labels: tuple[str, ...] = (),
) -> HistogramMetricFamily:
    """One histogram family; ``series`` maps label values to (bucket counts, sum)."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels) or None)
    for label_values, (counts, total) in series.items():
        cumulative, buckets = 0, []
        for bound, count in zip((*bounds, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        family.add_metric(list(label_values), buckets, total)
    return family


class _Families(Collector):
    """The replica's metric families from the workers' snapshots."""

    def __init__(self, metrics: ReplicaMetrics, snapshots: list[dict[str, Any]], ready: bool) -> None:
        self.metrics, self.snapshots, self.ready = metrics, snapshots, ready

    def collect(self) -> Iterator[Metric]:
        snapshots, model = self.snapshots, self.metrics.model
        live = [snapshot for snapshot in snapshots if snapshot.get("alive", True)]
        requests = CounterMetricFamily(
            "prewarm_replica_requests",
            "Infer requests served, by protocol and HTTP status (for gRPC: the status its code stands for)",
            labels=["endpoint", "protocol", "status"],
        )
        for protocol, prefix in (("http", ""), ("grpc", "grpc_")):
            by_status: dict[str, int] = {}
            for snapshot in snapshots:
                for status, count in snapshot[f"{prefix}requests"].items():
                    by_status[status] = by_status.get(status, 0) + count
            for status, count in sorted(by_status.items()):
                requests.add_metric(["infer", protocol, status], count)
        yield requests
        yield _histogram(
            "prewarm_replica_request_duration_seconds",
            "Infer request latency inside the server, by protocol",
            LATENCY_BUCKETS_S,
            {
                (protocol,): (
                    _sum_lists([s[f"{prefix}latency_counts"] for s in snapshots]),
                    sum(float(s[f"{prefix}latency_sum_s"]) for s in snapshots),
                )
                for protocol, prefix in (("http", ""), ("grpc", "grpc_"))
            },
            ("protocol",),
        )
        yield _histogram(
            "prewarm_replica_batch_size",
            "Rows per onnxruntime run",
            tuple(float(b) for b in BATCH_BUCKETS),
            {
                (): (
                    _sum_lists([s["batch_counts"] for s in snapshots]),
                    float(sum(int(s["batch_rows"]) for s in snapshots)),
                )
            },
        )
        gauges: tuple[tuple[str, str, str, Any, list[dict[str, Any]], list[str]], ...] = (
            ("prewarm_replica_in_flight_requests", "Infer requests being served", "in_flight", sum, live, []),
            ("prewarm_replica_queue_depth", "Infer requests waiting for a batch", "queue_depth", sum, live, []),
            ("prewarm_replica_model_load_seconds", "Seconds to create the onnxruntime session", "model_load_s", max,
             snapshots, [model]),
            ("prewarm_replica_warmup_seconds", "Seconds of warm-up inferences before ready", "warmup_s", max,
             snapshots, [model]),
            ("prewarm_replica_startup_seconds", "Seconds from replica process start to ready (slowest worker)",
             "startup_s", max, snapshots, [model]),
        )  # fmt: skip
        for name, documentation, key, combine, among, label_values in gauges:
            family = GaugeMetricFamily(name, documentation, labels=["model"] if label_values else None)
            family.add_metric(label_values, combine([float(s[key]) for s in among] or [0.0]))
            yield family
        ready = GaugeMetricFamily(
            "prewarm_replica_ready", "1 when every worker is warmed and serving", labels=["model"]
        )
        ready.add_metric([model], 1.0 if self.ready else 0.0)
        yield ready


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
        count = GaugeMetricFamily("prewarm_replica_processes", "Processes of the replica")
        count.add_metric([], len(processes))
        yield from (cpu, memory, count)
