"""``--service-time-ms``: each inference holds its request for that long without blocking the replica."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest

from inference.testing import digits_body, replica_process

pytestmark = pytest.mark.slow


def _post(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = httpx.post(
        url, content=digits_body(), headers={"Content-Type": "application/json"}, timeout=10
    )
    return response.status_code, time.perf_counter() - started


def test_each_inference_takes_the_service_time_and_requests_overlap(tmp_path: Path) -> None:
    with replica_process(tmp_path, extra_args=["--service-time-ms", "200"]) as replica:
        replica.wait_ready(timeout_s=30)
        url = f"{replica.url}/v2/models/digits_mlp/infer"
        status, elapsed = _post(url)
        assert status == 200 and elapsed >= 0.2
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            started = time.perf_counter()
            results = list(pool.map(lambda _: _post(url), range(4)))
            total = time.perf_counter() - started
        assert all(code == 200 for code, _ in results)
        assert (
            total < 0.6
        )  # four 200 ms requests on four connections wait side by side, not one after another
        started = time.perf_counter()
        assert httpx.get(f"{replica.url}/v2/health/ready", timeout=5).status_code == 200
        assert time.perf_counter() - started < 0.15  # health is not slowed down


def test_the_answer_is_the_same_as_without_service_time(tmp_path: Path) -> None:
    answers = []
    for extra in ([], ["--service-time-ms", "30"]):
        with replica_process(tmp_path, extra_args=extra) as replica:
            replica.wait_ready(timeout_s=30)
            response = httpx.post(
                f"{replica.url}/v2/models/digits_mlp/infer", content=digits_body(), timeout=10,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            answers.append(response.json()["outputs"])
    assert answers[0] == answers[1]
