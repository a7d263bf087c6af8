"""Per-second traffic summaries, their conversion to samples, batched store writes and /metrics."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from inference.gateway.collector import BatchWriter, MetricPoint, ReplicaUsage, second_to_points, store_writer
from inference.gateway.server import GatewayConfig
from inference.gateway.stats import TrafficStats
from prewarm import metric_names as m
from prewarm.db.engine import create_engine_for_url
from prewarm.db.store import MetricsStore
from tests.gateway_support import fake_replica, running_gateway, wait_for
from tests.helpers import add_deployment


def test_a_second_summarises_counts_and_latency_percentiles() -> None:
    stats = TrafficStats()
    for i in range(100):
        stats.record_arrival()
        stats.record_completion((i + 1) / 1000, error=i >= 98)
    summary = stats.close_second(1000.0, queue_length=3, in_flight=2, ready_replicas=2)
    assert (summary.requests, summary.errors, summary.queue_length) == (100, 2, 3)
    assert summary.latency_p50_ms == pytest.approx(50.5)
    assert summary.latency_p99_ms == pytest.approx(99.01)


def test_closing_a_second_starts_an_empty_one() -> None:
    stats = TrafficStats()
    stats.record_arrival()
    stats.record_completion(0.01, error=False)
    stats.close_second(1.0, 0, 0, 1)
    empty = stats.close_second(2.0, 0, 0, 1)
    assert (empty.requests, empty.latency_p95_ms) == (0, None)
    assert stats.requests_total == 1


def test_samples_of_a_second_include_mean_replica_usage() -> None:
    stats = TrafficStats()
    summary = stats.close_second(5.0, 0, 0, 2)
    usage = [ReplicaUsage("a", 50.0, 100.0, 1.0), ReplicaUsage("b", 150.0, 300.0, 3.0)]
    points = {p.metric: p.value for p in second_to_points("d", summary, usage)}
    assert points[m.CPU_PERCENT] == 100.0 and points[m.MEMORY_BYTES] == 200.0
    assert m.LATENCY_P50_MS not in points  # no request: no latency, rather than a made-up 0
    assert points[m.REQUESTS_RPS] == 0.0 and points[m.READY_REPLICAS] == 2.0


def test_batch_writer_writes_once_per_flush_and_keeps_points_when_a_write_fails() -> None:
    calls: list[int] = []
    fail = [True]

    def write(points: list[MetricPoint]) -> None:
        if fail[0]:
            raise RuntimeError("database down")
        calls.append(len(points))

    writer = BatchWriter(write)
    writer.add([MetricPoint("d", m.REQUESTS_RPS, float(t), 1.0) for t in range(10)])
    assert writer.flush() == 0 and writer.pending == 10
    fail[0] = False
    writer.add([MetricPoint("d", m.REQUESTS_RPS, 10.0, 1.0)])
    assert writer.flush() == 11 and calls == [11]


def test_store_writer_upserts_samples(database_url: str) -> None:
    engine = create_engine_for_url(database_url)
    add_deployment(engine, "digits")
    now = float(int(time.time()))
    write = store_writer(database_url)
    write(
        [MetricPoint("digits", m.REQUESTS_RPS, now, 7.0), MetricPoint("digits", m.REQUESTS_RPS, now, 8.0)][1:]
    )
    _ts, values = MetricsStore(engine).read_range(
        "digits", m.REQUESTS_RPS, datetime.fromtimestamp(now - 1, UTC), datetime.fromtimestamp(now + 1, UTC)
    )
    assert list(values) == [8.0]
    engine.dispose()


@pytest.mark.slow
def test_traffic_through_the_gateway_becomes_per_second_samples_in_the_store(database_url: str) -> None:
    engine = create_engine_for_url(database_url)
    add_deployment(engine, "digits")
    writer = BatchWriter(store_writer(database_url))
    start = datetime.now(UTC)
    with fake_replica() as (_, port):
        cfg = GatewayConfig(deployment="digits", port=0, static_upstreams=(f"127.0.0.1:{port}",),
                            metrics_flush_interval_s=0.5)  # fmt: skip
        with (
            running_gateway(cfg, writer) as gateway,
            httpx.Client(base_url=f"http://{gateway.address}") as client,
        ):
            for _ in range(30):
                client.post("/v2/models/fake/infer", json={})
                time.sleep(0.05)
            metrics = client.get("/metrics").text
            wait_for(lambda: writer.written_total > 0, 5, what="a batch written while serving")
    start = datetime.fromtimestamp(int(start.timestamp()), UTC)
    store = MetricsStore(engine)
    _, rps = store.read_range("digits", m.REQUESTS_RPS, start, datetime.now(UTC))
    _, p95 = store.read_range("digits", m.LATENCY_P95_MS, start, datetime.now(UTC))
    assert rps.sum() == 30 and len(p95) >= 1
    assert 'prewarm_gateway_requests_total{deployment="digits"} 30' in metrics
    assert "prewarm_gateway_request_duration_seconds_bucket" in metrics
    engine.dispose()


def test_samples_of_an_unknown_deployment_are_dropped_not_retried_forever(database_url: str) -> None:
    writer = BatchWriter(store_writer(database_url))
    writer.add([MetricPoint("nobody", m.REQUESTS_RPS, float(int(time.time())), 1.0)])
    writer.flush()
    assert writer.pending == 0 and writer.failed_writes == 0
