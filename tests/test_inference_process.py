"""A real replica process on 127.0.0.1: readiness, startup metric, SIGTERM drains in-flight work and exits."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from inference.testing import DEFAULT_MODEL, digits_body, replica_process

pytestmark = pytest.mark.slow
SERVERS = pytest.mark.parametrize("server", ["fast", "uvicorn"])
INFER = f"/v2/models/{DEFAULT_MODEL}/infer"


def metric_value(text: str, prefix: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(prefix))
    return float(line.rsplit(" ", 1)[-1])


@SERVERS
def test_replica_turns_ready_and_exports_its_startup_seconds(tmp_path: Path, server: str) -> None:
    with replica_process(tmp_path, extra_args=["--server", server]) as replica:
        replica.wait_ready()
        assert httpx.post(replica.url + INFER, content=digits_body()).status_code == 200
        metrics = httpx.get(replica.url + "/metrics").text
        startup_s = metric_value(metrics, "prewarm_replica_startup_seconds{")
        assert 0 < startup_s < 30
        assert "replica ready" in replica.log() and "startup_s=" in replica.log()


@SERVERS
def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_zero(
    tmp_path: Path, server: str
) -> None:
    # a batch waits up to 1.5 s to fill, so the first request is still in flight when SIGTERM arrives
    extra = ["--batch-max-size", "64", "--batch-max-wait-ms", "1500", "--server", server]
    with replica_process(tmp_path, extra_args=extra) as replica:
        replica.wait_ready()
        result: dict[str, httpx.Response] = {}
        in_flight = threading.Thread(
            target=lambda: result.setdefault(
                "r", httpx.post(replica.url + INFER, content=digits_body(), timeout=10)
            )
        )
        in_flight.start()
        time.sleep(0.4)
        replica.process.send_signal(15)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):
            httpx.post(replica.url + INFER, content=digits_body(), timeout=2)
        in_flight.join(timeout=10)
        assert result["r"].status_code == 200
        assert replica.process.wait(timeout=15) == 0


@SERVERS
def test_two_workers_share_the_port_and_stop_on_sigterm(tmp_path: Path, server: str) -> None:
    with replica_process(tmp_path, extra_args=["--workers", "2", "--server", server]) as replica:
        replica.wait_ready(timeout_s=60)
        with httpx.Client(base_url=replica.url) as client:
            statuses = {client.post(INFER, content=digits_body()).status_code for _ in range(20)}
            # other workers publish their numbers every 0.5 s: the sum converges to every request served
            deadline = time.monotonic() + 5
            while True:
                served = metric_value(
                    client.get("/metrics").text,
                    'prewarm_replica_requests_total{endpoint="infer",protocol="http",status="200"}',
                )
                if served == 20 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        assert statuses == {200}
        assert served == 20
        assert replica.terminate() == 0


def test_unknown_model_makes_the_command_fail_fast(tmp_path: Path) -> None:
    with replica_process(tmp_path, model="missing") as replica:
        assert replica.process.wait(timeout=30) == 2
        assert "no model 'missing'" in replica.log()
