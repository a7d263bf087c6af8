"""``prewarm controller`` as a real process on real Postgres: API, loop, forecasts, metrics, crash and restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

TOKEN = "process-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Controller:
    def __init__(self, database_url: str, state_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PREWARM_DATABASE_URL": database_url,
            "PREWARM_ADMIN_TOKENS": f"ops:{TOKEN}",
            "PREWARM_FORECAST_POLL_INTERVAL_S": "1",
        }
        self.state_dir = state_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "prewarm.cli", "controller", "--port", str(self.port)]
        command += ["--state-dir", str(self.state_dir), "--tick-s", "0.2"]
        log = (self.state_dir / "controller.log").open("ab")
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.state_dir / "controller.log").read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("controller did not answer within 30 s")

    def kill(self, sig: signal.Signals) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json() if "json" in response.headers.get("content-type", "") else response.text

    def post(self, path: str, body: Any) -> Any:
        response = httpx.post(f"{self.url}{path}", json=body, headers=ADMIN, timeout=60)
        assert response.status_code in (200, 201), response.text
        return response.json()


@pytest.fixture
def controller(postgres_url: str, tmp_path: Path) -> Iterator[Controller]:
    running = Controller(postgres_url, tmp_path)
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.kill(signal.SIGKILL)


def _wait_for(condition: Any, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def _push_load(controller: Controller, cpu_percent: float, seconds: int = 90) -> None:
    now = time.time()
    samples = [{"metric": "cpu_percent", "ts": now - i, "value": cpu_percent} for i in range(seconds)]
    samples += [{"metric": "rps", "ts": now - i, "value": 300.0 + (i % 7)} for i in range(seconds)]
    controller.post("/api/v1/deployments/digits/samples", {"samples": samples})


def test_controller_decides_forecasts_exports_metrics_and_survives_kill_9(controller: Controller) -> None:
    controller.post(
        "/api/v1/deployments",
        {
            "name": "digits", "model": "digits_mlp", "backend": "dry-run",
            "backend_config": {"initial_replicas": 2}, "min_replicas": 1, "max_replicas": 8,
            "policy": {"decision_interval_s": 1, "forecast_refit_interval_s": 3600},
        },
    )  # fmt: skip
    _push_load(controller, cpu_percent=140.0)

    # The loop scales the dry-run backend up on high CPU and records why.
    decisions = _wait_for(
        lambda: [
            d for d in controller.get("/api/v1/deployments/digits/decisions")["items"] if d["desired"] == 4
        ]
    )
    assert any("cpu" in reason for reason in decisions[0]["reasons"])
    # The scheduled forecast ran in the background and was stored.
    forecast = _wait_for(lambda: _latest_forecast(controller))
    assert forecast["points"] and forecast["model"]
    metrics = controller.get("/metrics")
    assert 'prewarm_controller_desired_replicas{deployment="digits"} 4.0' in metrics
    assert "<html" in controller.get("/dashboard").lower()

    stored_before = len(controller.get("/api/v1/deployments/digits/decisions?limit=500")["items"])
    assert controller.kill(signal.SIGKILL) == -signal.SIGKILL

    controller.start()  # same database: nothing stored is lost, the loop resumes
    assert controller.get("/api/v1/deployments/digits")["name"] == "digits"
    assert len(controller.get("/api/v1/deployments/digits/decisions?limit=500")["items"]) >= stored_before
    _push_load(controller, cpu_percent=140.0)
    status = _wait_for(lambda: _live_status(controller))
    assert status["desired_replicas"] >= 4
    assert controller.kill(signal.SIGTERM) == 0  # a clean stop on SIGTERM


def _latest_forecast(controller: Controller) -> dict[str, Any] | None:
    response = httpx.get(f"{controller.url}/api/v1/deployments/digits/forecasts/latest", timeout=10)
    return response.json() if response.status_code == 200 else None


def _live_status(controller: Controller) -> dict[str, Any] | None:
    status: dict[str, Any] = controller.get("/api/v1/deployments/digits/status")
    return status if status["source"] == "runtime" and status["desired_replicas"] else None
