"""``prewarm controller`` as a real process on real Postgres: API, loop, forecasts, metrics, crash and restart."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.controller_support import Controller, wait_for

pytestmark = pytest.mark.slow

@pytest.fixture
def controller(postgres_url: str, tmp_path: Path) -> Iterator[Controller]:
    running = Controller(postgres_url, tmp_path)
    running.start()
    yield running
    running.stop()


def _wait_for(condition: Any, timeout_s: float = 20.0) -> Any:
    return wait_for(condition, timeout_s, every_s=0.2)


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
            "backend_config": {"initial_replicas": 2}, "min_replicas": 1, "max_replicas": 4,  # 4 is stable: the dry-run
            # backend pretends new replicas at once and the CPU samples stay high, so without a cap it would go on
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
    # The loop goes on deciding after that decision: wait for the gauge to show it, do not read it once.
    _wait_for(lambda: 'prewarm_controller_desired_replicas{deployment="digits"} 4.0' in controller.get("/metrics"))
    exposition = controller.get("/metrics")
    assert 'prewarm_controller_decisions_total{deployment="digits",source=' in exposition
    assert "_created{" not in exposition  # a series per counter per deployment that nothing reads
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
