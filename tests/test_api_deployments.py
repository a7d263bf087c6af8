"""Deployments over HTTP: create, list, get, delete, status, and their validation errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from controller import repository
from prewarm.db.engine import session_factory
from prewarm.db.models import DeploymentStatus, ForecastPoint, ForecastRun
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


def test_create_returns_the_deployment_with_policy_version_one(client: TestClient) -> None:
    created = create_deployment(client, backend="dry-run", backend_config={"observe": False})
    assert created["name"] == "digits" and created["backend"] == "dry-run"
    assert (created["min_replicas"], created["max_replicas"], created["policy_version"]) == (1, 6, 1)


def test_create_sets_the_location_header(client: TestClient) -> None:
    response = client.post(f"{API}/deployments", json={"name": "digits", "model": "m"}, headers=ADMIN)
    assert response.headers["location"] == f"{API}/deployments/digits"


def test_bounds_come_from_the_policy_when_not_given_at_the_top_level(client: TestClient) -> None:
    created = create_deployment(
        client, min_replicas=None, max_replicas=None, policy={"min_replicas": 2, "max_replicas": 9}
    )
    assert (created["min_replicas"], created["max_replicas"]) == (2, 9)


def test_creating_an_existing_name_is_a_409(client: TestClient) -> None:
    create_deployment(client)
    response = client.post(f"{API}/deployments", json={"name": "digits", "model": "m"}, headers=ADMIN)
    assert_problem(response, 409, "already exists")


def test_min_above_max_is_a_422_naming_the_field(client: TestClient) -> None:
    response = client.post(
        f"{API}/deployments",
        json={"name": "d", "model": "m", "min_replicas": 5, "max_replicas": 2},
        headers=ADMIN,
    )
    body = assert_problem(response, 422, "must be >= min_replicas")
    assert body["errors"][0]["loc"] == ["body", "max_replicas"]


def test_invalid_name_is_a_422_with_its_path(client: TestClient) -> None:
    response = client.post(f"{API}/deployments", json={"name": "Not_OK", "model": "m"}, headers=ADMIN)
    body = assert_problem(response, 422)
    assert body["errors"][0]["pointer"] == "/name"


def test_bounds_given_twice_differently_is_a_422(client: TestClient) -> None:
    response = client.post(
        f"{API}/deployments",
        json={"name": "d", "model": "m", "max_replicas": 4, "policy": {"max_replicas": 8}},
        headers=ADMIN,
    )
    body = assert_problem(response, 422, "give it once")
    assert body["errors"][0]["loc"] == ["body", "policy", "max_replicas"]


def test_unknown_policy_field_is_a_422(client: TestClient) -> None:
    response = client.post(
        f"{API}/deployments", json={"name": "d", "model": "m", "policy": {"max_replicass": 8}}, headers=ADMIN
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["body", "policy", "max_replicass"]


def test_list_returns_every_deployment_by_name(client: TestClient) -> None:
    create_deployment(client, "zeta")
    create_deployment(client, "alpha")
    assert [d["name"] for d in client.get(f"{API}/deployments").json()["items"]] == ["alpha", "zeta"]


def test_get_returns_one_deployment(client: TestClient) -> None:
    create_deployment(client, price_per_replica_hour=0.25)
    got = client.get(f"{API}/deployments/digits").json()
    assert got["model"] == "digits_mlp" and got["price_per_replica_hour"] == 0.25


def test_get_unknown_is_a_404(client: TestClient) -> None:
    assert_problem(client.get(f"{API}/deployments/nope"), 404, "unknown deployment 'nope'")


def test_delete_removes_it(client: TestClient) -> None:
    create_deployment(client)
    assert client.delete(f"{API}/deployments/digits", headers=ADMIN).status_code == 204
    assert_problem(client.get(f"{API}/deployments/digits"), 404)


def test_delete_unknown_is_a_404(client: TestClient) -> None:
    assert_problem(client.delete(f"{API}/deployments/nope", headers=ADMIN), 404)


def test_status_from_the_store_uses_the_latest_decision_and_forecast(
    client: TestClient, engine: Engine
) -> None:
    create_deployment(client)
    now = datetime.now(UTC)
    with session_factory(engine)() as session:
        deployment = repository.get_deployment(session, "digits")
        repository.record_decision(
            session, deployment.id, ts=now, current=2, desired=3, applied=True, source="predictive",
            reasons=["forecast 500 rps needs 3"], policy_version=1,
        )  # fmt: skip
        run = ForecastRun(
            deployment_id=deployment.id, created_at=now, model_name="profile", step_s=60, horizon_s=120
        )
        session.add(run)
        session.flush()
        session.add(ForecastPoint(run_id=run.id, target_ts=now, point=400, lower=300, upper=500))
        session.commit()
    status = client.get(f"{API}/deployments/digits/status").json()
    assert status["source"] == "store"
    assert (status["current_replicas"], status["desired_replicas"], status["ready_replicas"]) == (2, 3, None)
    assert status["last_decision"]["reasons"] == ["forecast 500 rps needs 3"]
    assert status["latest_forecast"]["next_upper_rps"] == 500


def test_status_shows_the_learned_capacity_the_owner_stored_with_its_strain(
    client: TestClient, engine: Engine
) -> None:
    create_deployment(client, policy={"replica_capacity_rps": "learned"})
    estimate = {"rps_per_replica": 30.2, "observations": 900, "confidence": 0.4, "basis": "lower bound",
                "bracketed": False, "strained_rps": 38.6}  # fmt: skip
    with session_factory(engine)() as session, session.begin():
        deployment_id = repository.get_deployment(session, "digits").id
        session.add(DeploymentStatus(deployment_id=deployment_id, controller="c1",
                                     capacity={"mode": "learned", "in_use_rps": 38.6, "estimate": estimate}))  # fmt: skip
    capacity = client.get(f"{API}/deployments/digits/status").json()["capacity"]
    assert capacity["mode"] == "learned" and capacity["in_use_rps"] == 38.6
    assert capacity["estimate"] == estimate


class FakeRuntime:
    """A controller runtime that knows one deployment's live counts."""

    def status(self, deployment_name: str) -> dict[str, Any] | None:
        return (
            {"current_replicas": 4, "desired_replicas": 5, "ready_replicas": 3}
            if deployment_name == "digits"
            else None
        )

    async def refresh_forecast(self, deployment_name: str) -> None:
        return None

    def activate(self, deployment_name: str, held_requests: int) -> bool:
        return False


def test_status_with_a_runtime_has_live_counts(make_client: ClientFactory) -> None:
    client = make_client(runtime=FakeRuntime())
    create_deployment(client)
    status = client.get(f"{API}/deployments/digits/status").json()
    assert status["source"] == "runtime"
    assert (status["current_replicas"], status["desired_replicas"], status["ready_replicas"]) == (4, 5, 3)


def test_status_lists_active_overrides_only(client: TestClient) -> None:
    create_deployment(client)
    now = datetime.now(UTC)
    for start_h in (0, 5):
        client.post(
            f"{API}/deployments/digits/overrides",
            json={
                "kind": "floor",
                "value": 2,
                "starts_at": (now + timedelta(hours=start_h)).isoformat(),
                "duration_s": 3600,
                "reason": "event",
            },
            headers=ADMIN,
        )
    active = client.get(f"{API}/deployments/digits/status").json()["active_overrides"]
    assert [o["state"] for o in active] == ["active"]


def test_status_of_unknown_is_a_404(client: TestClient) -> None:
    assert_problem(client.get(f"{API}/deployments/nope/status"), 404)


def test_text_no_database_can_store_is_a_422(client: TestClient) -> None:
    for bad in (b'"digits\\u0000mlp"', b'"\\ud800"'):
        response = client.post(
            f"{API}/deployments",
            content=b'{"name": "d", "model": ' + bad + b"}",
            headers={**ADMIN, "content-type": "application/json"},
        )
        assert_problem(response, 422, "must not contain")


def test_status_of_a_deployment_at_zero_says_since_when_idle_and_when_it_wakes(
    client: TestClient, engine: Engine
) -> None:
    from prewarm.db.models import DeploymentStatus

    create_deployment(client)
    now = datetime.now(UTC).replace(microsecond=0)
    idle_since, wake_at = now - timedelta(minutes=5), now + timedelta(minutes=20)
    with session_factory(engine)() as session:
        deployment = repository.get_deployment(session, "digits")
        session.add(
            DeploymentStatus(
                deployment_id=deployment.id, updated_at=now, controller="c-0", term=1, current_replicas=0,
                desired_replicas=0, ready_replicas=0, source="scale-to-zero", reason="scale-to-zero: ...",
                decided_at=now, idle_since=idle_since, next_wake_at=wake_at,
            )
        )  # fmt: skip
        session.commit()
    status = client.get(f"{API}/deployments/digits/status").json()
    assert status["source"] == "status"
    assert (status["ready_replicas"], status["desired_replicas"], status["step"]) == (0, 0, "scale-to-zero")
    assert datetime.fromisoformat(status["idle_since"]) == idle_since
    assert datetime.fromisoformat(status["next_wake_at"]) == wake_at
    item = client.get(f"{API}/fleet").json()["items"][0]
    assert datetime.fromisoformat(item["idle_since"]) == idle_since
    assert datetime.fromisoformat(item["next_wake_at"]) == wake_at
