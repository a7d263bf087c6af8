"""Forecasts and metric ingestion over HTTP: latest forecast with bands, refresh, sample batches."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from controller import repository
from prewarm.db.engine import session_factory
from prewarm.db.models import ForecastPoint, ForecastRun
from prewarm.db.store import MetricsStore
from tests.api_support import (
    ADMIN,
    API,
    ClientFactory,
    assert_problem,
    client,
    create_deployment,
    make_client,
)

__all__ = ["client", "make_client"]  # fixtures

BASE = f"{API}/deployments/digits"


def _store_forecast(engine: Engine, created_at: datetime, model: str = "profile", points: int = 5) -> int:
    with session_factory(engine)() as session:
        deployment_id = repository.get_deployment(session, "digits").id
        run = ForecastRun(deployment_id=deployment_id, created_at=created_at, model_name=model, step_s=60,
                          horizon_s=60 * points)  # fmt: skip
        session.add(run)
        session.flush()
        for k in range(points):
            ts = created_at + timedelta(minutes=k)
            session.add(
                ForecastPoint(run_id=run.id, target_ts=ts, point=100 + k, lower=80 + k, upper=120 + k)
            )
        session.commit()
        return run.id


def test_latest_forecast_has_points_with_bands(client: TestClient, engine: Engine) -> None:
    create_deployment(client)
    now = datetime.now(UTC)
    _store_forecast(engine, now - timedelta(minutes=20), model="old")
    _store_forecast(engine, now)
    body = client.get(f"{BASE}/forecasts/latest").json()
    assert body["model"] == "profile" and len(body["points"]) == 5
    assert body["points"][0] == {"ts": body["points"][0]["ts"], "point": 100.0, "lower": 80.0, "upper": 120.0}


def test_horizon_limits_the_points(client: TestClient, engine: Engine) -> None:
    create_deployment(client)
    _store_forecast(engine, datetime.now(UTC))
    body = client.get(f"{BASE}/forecasts/latest", params={"horizon_s": 150}).json()
    assert [p["point"] for p in body["points"]] == [100, 101, 102]


def test_no_forecast_yet_is_a_404_saying_how_to_get_one(client: TestClient) -> None:
    create_deployment(client)
    assert_problem(client.get(f"{BASE}/forecasts/latest"), 404, "forecasts:refresh")


def test_non_positive_horizon_is_a_422(client: TestClient) -> None:
    create_deployment(client)
    assert_problem(client.get(f"{BASE}/forecasts/latest", params={"horizon_s": 0}), 422)


class RecordingRuntime:
    """A runtime whose refresh writes a forecast (in a worker thread, like the real one)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.refreshed: list[str] = []

    def status(self, deployment_name: str) -> dict[str, Any] | None:
        return None

    async def refresh_forecast(self, deployment_name: str) -> int:
        self.refreshed.append(deployment_name)
        return await asyncio.to_thread(_store_forecast, self.engine, datetime.now(UTC), "holt_winters")

    def activate(self, deployment_name: str, held_requests: int) -> bool:
        return False


def test_refresh_goes_through_the_runtime_and_returns_the_new_forecast(
    make_client: ClientFactory, engine: Engine
) -> None:
    runtime = RecordingRuntime(engine)
    client = make_client(runtime=runtime)
    create_deployment(client)
    response = client.post(f"{BASE}/forecasts:refresh", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "holt_winters" and runtime.refreshed == ["digits"]


def test_refresh_needs_an_admin_token(make_client: ClientFactory, engine: Engine) -> None:
    client = make_client(runtime=RecordingRuntime(engine))
    create_deployment(client)
    assert_problem(client.post(f"{BASE}/forecasts:refresh"), 401)


def test_refresh_of_unknown_deployment_is_a_404(client: TestClient) -> None:
    assert_problem(client.post(f"{API}/deployments/nope/forecasts:refresh", headers=ADMIN), 404)


def test_refresh_without_a_runtime_runs_the_forecaster_on_pushed_samples(client: TestClient) -> None:
    create_deployment(client, policy={"forecast_model": "ma", "forecast_history_s": 3 * 3600})
    now = time.time()
    stamps = [now - 3 * 3600 + i for i in range(0, 3 * 3600, 10)]
    samples = [{"metric": "rps", "ts": ts, "value": 100.0} for ts in stamps]
    assert client.post(f"{BASE}/samples", json={"samples": samples}, headers=ADMIN).status_code == 200
    response = client.post(f"{BASE}/forecasts:refresh", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["points"] and response.json()["points"][0]["upper"] > 0


def test_samples_are_written_and_readable_from_the_store(client: TestClient, engine: Engine) -> None:
    create_deployment(client)
    now = float(int(time.time()))
    batch = [{"metric": "rps", "ts": now - 2, "value": 10}, {"metric": "rps", "ts": now - 1, "value": 12}]
    response = client.post(f"{BASE}/samples", json={"samples": batch}, headers=ADMIN)
    assert response.json() == {"written": 2}
    _, values = MetricsStore(engine).read_range(
        "digits", "rps", datetime.fromtimestamp(now - 10, UTC), datetime.fromtimestamp(now, UTC)
    )
    assert list(values) == [10, 12]


def test_resending_a_batch_does_not_duplicate(client: TestClient, engine: Engine) -> None:
    create_deployment(client)
    now = float(int(time.time()))
    batch = {"samples": [{"metric": "rps", "ts": now - 1, "value": 10}]}
    client.post(f"{BASE}/samples", json=batch, headers=ADMIN)
    client.post(f"{BASE}/samples", json=batch, headers=ADMIN)
    _, values = MetricsStore(engine).read_range(
        "digits", "rps", datetime.fromtimestamp(now - 10, UTC), datetime.fromtimestamp(now, UTC)
    )
    assert list(values) == [10]


def test_invalid_samples_are_a_422_with_the_store_message_and_nothing_is_written(
    client: TestClient, engine: Engine
) -> None:
    create_deployment(client)
    now = time.time()
    batch = [{"metric": "rps", "ts": now - 1, "value": 1}, {"metric": "rps", "ts": now - 2, "value": -5}]
    assert_problem(client.post(f"{BASE}/samples", json={"samples": batch}, headers=ADMIN), 422, "negative")
    _, values = MetricsStore(engine).read_range(
        "digits", "rps", datetime.fromtimestamp(now - 10, UTC), datetime.fromtimestamp(now + 1, UTC)
    )
    assert len(values) == 0


def test_samples_for_unknown_deployment_are_a_404(client: TestClient) -> None:
    batch = {"samples": [{"metric": "rps", "ts": time.time(), "value": 1}]}
    assert_problem(client.post(f"{API}/deployments/nope/samples", json=batch, headers=ADMIN), 404)


def test_empty_batch_is_a_422(client: TestClient) -> None:
    create_deployment(client)
    assert_problem(client.post(f"{BASE}/samples", json={"samples": []}, headers=ADMIN), 422)


def test_body_over_the_limit_is_a_413(make_client: ClientFactory) -> None:
    client = make_client(api_max_body_bytes=1000)
    create_deployment(client)
    batch = {"samples": [{"metric": "rps", "ts": time.time(), "value": 1}] * 100}
    assert_problem(client.post(f"{BASE}/samples", json=batch, headers=ADMIN), 413)
