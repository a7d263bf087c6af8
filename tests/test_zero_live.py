"""Scale to zero with real processes: after an idle stretch at zero, a burst through the gateway all succeeds.

A controller (loop, API, local replicas of digits_mlp), a gateway (nginx data plane, activator on) and Postgres. The
deployment sits at zero; 20 concurrent requests arrive; the activator holds them and pushes to the controller, a
replica starts, every request is answered 200 and none is refused.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from benchmarks.zero_bench import BODY, INFER, MODEL, NAME, POLICY
from prewarm.demo.stack import LocalStack
from tests.controller_support import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def test_a_burst_after_an_idle_stretch_at_zero_all_succeeds(postgres_url: str, tmp_path: Path) -> None:
    token = secrets.token_hex(8)
    stack = LocalStack(workdir=tmp_path / "stack", database_url=postgres_url, admin_token=token)
    stack.extra_env = {
        "PREWARM_FORECASTS_ENABLED": "false",
        "PREWARM_METRICS_FLUSH_INTERVAL_S": "1",
        "PREWARM_ACTIVATOR_CONTROLLER_URL": stack.api_url,
        "PREWARM_ACTIVATOR_TOKEN": token,
    }
    try:
        stack.start_controller(tick_s=0.1)
        stack.call("POST", "/deployments", {
            "name": NAME, "model": MODEL, "backend": "local",
            "backend_config": {"model_repo": str(Path("models/onnx").resolve())}, "policy": POLICY,
        })  # fmt: skip
        stack.start_gateway(NAME, "nginx")

        def at_zero() -> bool:
            status = stack.call("GET", f"/deployments/{NAME}/status")
            return status["current_replicas"] == 0 and status["ready_replicas"] == 0

        wait_for(at_zero, 30)
        time.sleep(3.0)  # idle at zero
        assert at_zero()

        def one(_: int) -> int:
            return httpx.post(f"{stack.gateway_url}{INFER}", json=BODY, timeout=45).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(one, range(20)))
        took = time.monotonic() - started
        metrics = httpx.get(f"{stack.gateway_url}/metrics").text
    finally:
        stack.stop()
    assert statuses == [200] * 20, statuses
    assert took < 30  # bounded: a replica's startup plus the controller's reaction, far below the 30 s hold
    assert f'prewarm_gateway_activator_refused_total{{deployment="{NAME}"}} 0' in metrics
    assert f'prewarm_gateway_activator_timed_out_total{{deployment="{NAME}"}} 0' in metrics
