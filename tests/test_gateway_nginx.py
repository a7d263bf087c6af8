"""The gateway driving nginx: config rendering, log parsing, and real nginx in front of fake replicas."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from inference.gateway.nginx import NginxConfig, parse_access_lines, parse_stub_status, render_config
from inference.gateway.server import GatewayConfig
from tests.gateway_support import fake_replica, running_nginx_gateway, wait_for

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
INFER = "/v2/models/fake/infer"


def test_config_lists_routable_replicas_with_least_conn_and_retries() -> None:
    text = render_config(NginxConfig("127.0.0.1", 8080, Path("/w")), [("127.0.0.1", 9001), ("127.0.0.1", 9002)],
                         "127.0.0.1:7000", 7001)  # fmt: skip
    assert "least_conn;" in text and "keepalive 64;" in text
    assert "server 127.0.0.1:9001 max_fails=1 fail_timeout=1s;" in text and "127.0.0.1:9002" in text
    assert "proxy_next_upstream error timeout http_502 non_idempotent;" in text


def test_config_without_replicas_answers_503_with_retry_after() -> None:
    text = render_config(NginxConfig("127.0.0.1", 8080, Path("/w")), [], "127.0.0.1:7000", 7001)
    assert "upstream replicas" not in text and "return 503" in text and "Retry-After 1 always" in text


def test_access_lines_parse_and_keep_the_unfinished_line() -> None:
    entries, rest = parse_access_lines(b"1700000000.123 200 0.004\n1700000000.2 503 0.000\n17000000")
    assert entries == [(200, 0.004), (503, 0.0)] and rest == b"17000000"


def test_stub_status_in_flight_excludes_the_status_request() -> None:
    text = (
        "Active connections: 5\nserver accepts handled requests\n 1 1 9\nReading: 0 Writing: 4 Waiting: 1\n"
    )
    assert parse_stub_status(text) == 3


@needs_nginx
@pytest.mark.timeout(60)
def test_nginx_follows_ejection_without_failing_requests(tmp_path: Path) -> None:
    with fake_replica() as (a, port_a), fake_replica() as (b, port_b):
        config = GatewayConfig(port=0, static_upstreams=(f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"))
        with (
            running_nginx_gateway(config, tmp_path / "nginx") as (_gateway, address),
            httpx.Client(base_url=f"http://{address}") as client,
        ):
            assert {client.post(INFER, json={}).json()["replica"] for _ in range(10)} == {a.pid, b.pid}
            a.kill()
            a.wait()
            statuses = [client.post(INFER, json={}).status_code for _ in range(50)]
            wait_for(lambda: "127.0.0.1:" + str(port_a) not in (tmp_path / "nginx" / "nginx.conf").read_text(),
                     2, what="config without the dead replica")  # fmt: skip
            served = {client.post(INFER, json={}).json()["replica"] for _ in range(10)}
    assert statuses == [200] * 50
    assert served == {b.pid}


@needs_nginx
@pytest.mark.timeout(60)
def test_nginx_mode_counts_requests_from_the_access_log_and_answers_503_when_no_replica(
    tmp_path: Path,
) -> None:
    with fake_replica() as (a, port_a):
        config = GatewayConfig(port=0, static_upstreams=(f"127.0.0.1:{port_a}",))
        with (
            running_nginx_gateway(config, tmp_path / "nginx") as (gateway, address),
            httpx.Client(base_url=f"http://{address}") as client,
        ):
            for _ in range(20):
                client.post(INFER, json={})
            wait_for(lambda: gateway.stats.requests_total >= 20, 5, what="access log read")
            a.kill()
            a.wait()
            conf = tmp_path / "nginx" / "nginx.conf"
            wait_for(lambda: "return 503" in conf.read_text(), 2, what="reload without replicas")
            unavailable = wait_for(  # nginx swaps its workers shortly after the reload signal
                lambda: next((r for r in [client.post(INFER, json={})] if r.status_code == 503), None),
                3,
                what="503",
            )
            metrics = client.get("/metrics").text
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "1"
    assert "prewarm_gateway_requests_total" in metrics
    assert gateway.stats.requests_total >= 20
