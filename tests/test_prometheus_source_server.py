"""The Prometheus source against a real Prometheus (Debian's binary) scraping replica-shaped exporters on 127.0.0.1."""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.sources.prometheus import ObservationWindow, PrometheusSource
from inference.testing import stop_process
from prewarm import metric_names as m

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus package is not installed"),
]


@dataclass(frozen=True)
class ReplicaLoad:
    """What one fake replica reports: counters grow at exact rates computed at scrape time."""

    rps: float
    errors_rps: float
    cpu_cores: float
    memory_bytes: float
    queue_depth: float
    in_flight: float


class ReplicaShapedCollector(Collector):
    """The replica's metric names (inference/metrics.py) with values that are exact functions of time."""

    def __init__(self, load: ReplicaLoad) -> None:
        self.load = load
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        elapsed = now - self.started  # counters carry their own timestamps: rates stay exact under load
        load = self.load
        requests = CounterMetricFamily("prewarm_replica_requests", "Requests", labels=["endpoint", "status"])
        requests.add_metric(["infer", "200"], (load.rps - load.errors_rps) * elapsed, timestamp=now)
        requests.add_metric(["infer", "500"], load.errors_rps * elapsed, timestamp=now)
        requests.add_metric(
            ["healthz", "200"], 5 * elapsed, timestamp=now
        )  # not inference traffic: must not count
        latency = HistogramMetricFamily("prewarm_replica_request_duration_seconds", "Latency")
        count = load.rps * elapsed  # every request between 10 and 25 ms
        latency.add_metric(
            [],
            [("0.005", 0.0), ("0.01", 0.0), ("0.025", count), ("0.05", count), ("+Inf", count)],
            0.02 * count,
            timestamp=now,
        )
        cpu = CounterMetricFamily("prewarm_replica_cpu_seconds", "CPU seconds")
        cpu.add_metric([], load.cpu_cores * elapsed, timestamp=now)
        yield from (requests, latency, cpu)
        for name, value in (
            ("prewarm_replica_memory_bytes", load.memory_bytes),
            ("prewarm_replica_queue_depth", load.queue_depth),
            ("prewarm_replica_in_flight_requests", load.in_flight),
        ):
            gauge = GaugeMetricFamily(name, name)
            gauge.add_metric([], value)
            yield gauge
        ready = GaugeMetricFamily("prewarm_replica_ready", "Ready", labels=["model"])
        ready.add_metric(["digits_mlp"], 1.0)
        yield ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrometheusServer:
    url: str


LOADS = (
    ReplicaLoad(rps=120, errors_rps=6, cpu_cores=0.4, memory_bytes=1e8, queue_depth=1, in_flight=3),
    ReplicaLoad(rps=80, errors_rps=4, cpu_cores=0.6, memory_bytes=3e8, queue_depth=2, in_flight=1),
)
RATE_WINDOW = "5s"
SETTLE_S = 7.0


def typical(window: ObservationWindow, metric: str) -> float:
    """The median over the window: rate() extrapolation under-reads a point when a scrape came late (load)."""
    return float(np.nanmedian(window.get(metric)))


@contextmanager
def running_prometheus(
    workdir: Path, targets: list[str], ready_query: str, ready_min: float
) -> Iterator[str]:
    """A Prometheus on a free 127.0.0.1 port scraping ``targets`` (label deployment="demo") every second."""
    config = workdir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: replicas\n"
        "    static_configs:\n"
        f"      - targets: {targets}\n"
        "        labels: {deployment: demo}\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assert PROMETHEUS is not None
    log = workdir / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        wait_for_data(url, process, log, ready_query, ready_min)
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Two replica-shaped exporters (deployment "demo") and a Prometheus scraping them every second."""
    servers = []
    targets = []
    for load in LOADS:
        registry = CollectorRegistry()
        registry.register(ReplicaShapedCollector(load))
        server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        servers.append(server)
        targets.append(f"127.0.0.1:{server.server_port}")
    # 3 series (infer 200/500, healthz) on each of the 2 targets
    query = f'count(rate(prewarm_replica_requests_total{{deployment="demo"}}[{RATE_WINDOW}]))'
    try:
        with running_prometheus(tmp_path_factory.mktemp("prometheus"), targets, query, 6) as url:
            yield PrometheusServer(url)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def wait_for_data(
    url: str, process: subprocess.Popen[bytes], log: Path, query: str, minimum: float, limit_s: float = 45.0
) -> None:
    """Until ``query`` reaches ``minimum`` (Prometheus has scraped enough), then a few more scrapes."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()
            result = answer.get("data", {}).get("result", [])
            if result and float(result[0]["value"][1]) >= minimum:
                time.sleep(SETTLE_S)  # full rate windows behind the points the tests read
                return
        except (httpx.HTTPError, ValueError):  # not listening yet, or "Service Unavailable" while starting
            pass
        time.sleep(0.3)
    pytest.fail(f"prometheus had no data after {limit_s} s: {log.read_text()[-2000:]}")


@pytest.fixture
def source(prometheus: PrometheusServer) -> Iterator[PrometheusSource]:
    source = PrometheusSource(prometheus.url, rate_window=RATE_WINDOW, timeout_s=5)
    yield source
    source.close()


def test_window_is_a_per_second_axis_ending_at_the_requested_time(source: PrometheusSource) -> None:
    end = float(int(time.time()))
    window = source.window("demo", end, duration_s=10)
    assert window.timestamps.shape == (10,)
    assert np.all(np.diff(window.timestamps) == 1.0)
    assert window.timestamps[-1] == end
    assert all(values.shape == (10,) for values in window.values.values())


def test_request_rate_is_the_inference_traffic_summed_over_replicas(source: PrometheusSource) -> None:
    window = source.window("demo", time.time(), duration_s=5)
    assert window.complete
    assert typical(window, m.REQUESTS_RPS) == pytest.approx(200, rel=0.05)
    assert typical(window, m.ERRORS_RPS) == pytest.approx(10, rel=0.05)


def test_p95_latency_is_read_from_the_histogram_in_milliseconds(source: PrometheusSource) -> None:
    window = source.window("demo", time.time(), duration_s=5)
    # all requests in the (10 ms, 25 ms] bucket: Prometheus interpolates the 95th percentile to 24.25 ms
    assert typical(window, m.LATENCY_P95_MS) == pytest.approx(24.25, rel=0.01)


def test_cpu_and_memory_are_means_over_replicas(source: PrometheusSource) -> None:
    window = source.window("demo", time.time(), duration_s=5)
    assert typical(window, m.CPU_PERCENT) == pytest.approx(50, rel=0.05)
    assert window.latest(m.MEMORY_BYTES) == pytest.approx(2e8)


def test_queue_in_flight_and_ready_are_sums_over_replicas(source: PrometheusSource) -> None:
    window = source.window("demo", time.time(), duration_s=5)
    assert window.latest(m.QUEUE_LENGTH) == 3
    assert window.latest(m.IN_FLIGHT) == 4
    assert window.latest(m.READY_REPLICAS) == 2


def test_another_deployment_has_no_values_but_a_complete_window(source: PrometheusSource) -> None:
    window = source.window("other", time.time(), duration_s=5)
    assert window.complete
    assert all(np.isnan(values).all() for values in window.values.values())


def test_window_converts_to_store_samples(source: PrometheusSource) -> None:
    end = float(int(time.time()))
    samples = source.window("demo", end, duration_s=3).to_samples()
    rps = [s for s in samples if s.metric == m.REQUESTS_RPS]
    assert rps and all(s.deployment == "demo" and end - 3 < s.ts <= end for s in rps)
    assert {s.metric for s in samples} <= m.ALL


def test_recording_source_keeps_prometheus_observations_in_the_store(
    source: PrometheusSource, postgres_url: str
) -> None:
    from controller.sources.store import RecordingSource
    from prewarm.db.engine import create_engine_for_url
    from prewarm.db.store import MetricsStore
    from tests.helpers import add_deployment

    engine = create_engine_for_url(postgres_url)
    add_deployment(engine, "demo")
    store = MetricsStore(engine)
    end = float(int(time.time()))
    window = RecordingSource(source, store).window("demo", end, duration_s=5)
    start = datetime.fromtimestamp(end - 10, UTC)
    stamps, values = store.read_range("demo", m.REQUESTS_RPS, start, datetime.fromtimestamp(end + 1, UTC))
    finite = np.isfinite(window.get(m.REQUESTS_RPS))
    assert len(stamps) == int(finite.sum()) > 0
    assert values.tolist() == window.get(m.REQUESTS_RPS)[finite].tolist()
    engine.dispose()


def test_a_failing_query_blanks_only_its_metric(prometheus: PrometheusServer) -> None:
    queries = {
        m.REQUESTS_RPS: "sum(rate(prewarm_replica_requests_total{$selector}[$window]))",
        m.CPU_PERCENT: "sum((",
    }
    source = PrometheusSource(prometheus.url, queries=queries, rate_window=RATE_WINDOW)
    window = source.window("demo", time.time(), duration_s=5)
    assert not window.complete
    assert len(window.errors) == 1 and window.errors[0].startswith(m.CPU_PERCENT)
    assert np.isnan(window.get(m.CPU_PERCENT)).all()
    assert window.latest(m.REQUESTS_RPS) > 0


def test_prometheus_down_gives_nan_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_s=1, retries=0)
    with caplog.at_level(logging.WARNING, logger="controller.sources.prometheus"):
        first = source.window("demo", time.time(), duration_s=5)
        second = source.window("demo", time.time(), duration_s=5)
    for window in (first, second):
        assert not window.complete
        assert all(np.isnan(values).all() for values in window.values.values())
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1


REPO = Path(__file__).resolve().parent.parent
DIGITS_BODY = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.25] * 64}]}


@pytest.fixture(scope="module")
def replica_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real replica process (``prewarm replica``, run as ``python -m inference replica``) on 127.0.0.1."""
    port = free_port()
    log = tmp_path_factory.mktemp("replica") / "replica.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference", "replica", "--host", "127.0.0.1", "--port", str(port),
             "--model-repo", str(REPO / "models" / "onnx"), "--model", "digits_mlp"],
            stdout=subprocess.DEVNULL, stderr=log_file, cwd=REPO,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the replica did not become ready: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        stop_process(process)


def test_real_replica_scraped_by_prometheus_gives_every_default_metric(
    replica_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    infer = f"{replica_url}/v2/models/digits_mlp/infer"
    stop_traffic = threading.Event()
    statuses: list[int] = []

    def traffic() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop_traffic.is_set():
                with contextlib.suppress(
                    httpx.HTTPError
                ):  # a slow answer under load must not end the traffic
                    statuses.append(client.post(infer, json=DIGITS_BODY).status_code)
                time.sleep(0.01)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    target = replica_url.removeprefix("http://")
    query = f'sum(rate(prewarm_replica_requests_total{{deployment="demo", endpoint="infer"}}[{RATE_WINDOW}]))'
    try:
        with running_prometheus(tmp_path_factory.mktemp("prometheus-replica"), [target], query, 1) as url:
            source = PrometheusSource(url, rate_window=RATE_WINDOW)
            window = source.window("demo", time.time(), duration_s=5)
            source.close()
    finally:
        stop_traffic.set()
        sender.join(10)
    assert statuses and set(statuses) == {200}
    assert window.complete, window.errors
    assert window.latest(m.REQUESTS_RPS) > 1
    assert window.latest(m.ERRORS_RPS) == 0 or np.isnan(window.latest(m.ERRORS_RPS))
    assert 0 < window.latest(m.LATENCY_P95_MS) < 5000
    assert window.latest(m.CPU_PERCENT) > 0
    assert window.latest(m.MEMORY_BYTES) > 1e6
    assert window.latest(m.QUEUE_LENGTH) >= 0
    assert window.latest(m.READY_REPLICAS) == 1
