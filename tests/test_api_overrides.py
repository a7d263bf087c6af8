"""Overrides over HTTP: create with expiry and reason, list active and past, end early, who did what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.api_support import ADMIN, API, assert_problem, client, create_deployment, make_client

__all__ = ["client", "make_client"]  # fixtures

OVERRIDES = f"{API}/deployments/digits/overrides"


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def test_pin_with_a_duration_is_active_and_records_its_author(client: TestClient) -> None:
    create_deployment(client)
    response = client.post(
        OVERRIDES, json={"kind": "pin", "value": 5, "duration_s": 7200, "reason": "launch"}, headers=ADMIN
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["value"], body["state"], body["author"]) == ("pin", 5, "active", "alice")
    assert response.headers["location"] == f"{OVERRIDES}/{body['id']}"


def test_each_kind_can_be_created(client: TestClient) -> None:
    create_deployment(client)
    for kind, value in [
        ("pin", 3),
        ("floor", 2),
        ("freeze", None),
        ("reactive-only", None),
        ("dry-run", None),
    ]:
        response = client.post(
            OVERRIDES, json={"kind": kind, "value": value, "duration_s": 60, "reason": "test"}, headers=ADMIN
        )
        assert response.status_code == 201, response.text


def test_override_needs_an_expiry(client: TestClient) -> None:
    create_deployment(client)
    body = assert_problem(
        client.post(OVERRIDES, json={"kind": "freeze", "reason": "x"}, headers=ADMIN), 422, "expire"
    )
    assert body["errors"][0]["loc"] == ["body", "ends_at"]


def test_override_needs_a_reason(client: TestClient) -> None:
    create_deployment(client)
    body = assert_problem(
        client.post(OVERRIDES, json={"kind": "freeze", "duration_s": 60}, headers=ADMIN), 422
    )
    assert body["errors"][0]["loc"] == ["body", "reason"]


def test_pin_without_a_value_is_a_422(client: TestClient) -> None:
    create_deployment(client)
    response = client.post(OVERRIDES, json={"kind": "pin", "duration_s": 60, "reason": "x"}, headers=ADMIN)
    assert_problem(response, 422, "needs a replica count")


def test_end_before_start_is_a_422(client: TestClient) -> None:
    create_deployment(client)
    response = client.post(
        OVERRIDES,
        json={
            "kind": "freeze",
            "starts_at": _iso(timedelta(hours=2)),
            "ends_at": _iso(timedelta(hours=1)),
            "reason": "x",
        },
        headers=ADMIN,
    )
    assert_problem(response, 422, "must be after")


def test_naive_timestamps_are_a_422(client: TestClient) -> None:
    create_deployment(client)
    response = client.post(
        OVERRIDES, json={"kind": "freeze", "ends_at": "2030-01-01T00:00:00", "reason": "x"}, headers=ADMIN
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["body", "ends_at"]


def test_unknown_kind_is_a_422(client: TestClient) -> None:
    create_deployment(client)
    response = client.post(OVERRIDES, json={"kind": "boost", "duration_s": 60, "reason": "x"}, headers=ADMIN)
    assert assert_problem(response, 422)["errors"][0]["loc"] == ["body", "kind"]


def test_list_filters_by_state(client: TestClient) -> None:
    create_deployment(client)
    client.post(
        OVERRIDES, json={"kind": "floor", "value": 2, "duration_s": 600, "reason": "now"}, headers=ADMIN
    )
    client.post(
        OVERRIDES,
        json={"kind": "freeze", "starts_at": _iso(timedelta(hours=1)), "duration_s": 600, "reason": "later"},
        headers=ADMIN,
    )
    client.post(
        OVERRIDES,
        json={"kind": "pin", "value": 1, "starts_at": _iso(-timedelta(hours=2)), "ends_at": _iso(-timedelta(hours=1)), "reason": "before"},
        headers=ADMIN,
    )  # fmt: skip
    reasons = {state: [o["reason"] for o in client.get(OVERRIDES, params={"state": state}).json()["items"]]
               for state in ("all", "active", "scheduled", "past")}  # fmt: skip
    assert reasons == {
        "all": ["later", "now", "before"],
        "active": ["now"],
        "scheduled": ["later"],
        "past": ["before"],
    }


def test_delete_ends_it_early_and_records_who(client: TestClient) -> None:
    create_deployment(client)
    created = client.post(
        OVERRIDES, json={"kind": "pin", "value": 4, "duration_s": 600, "reason": "x"}, headers=ADMIN
    )
    override_id = created.json()["id"]
    ended = client.delete(f"{OVERRIDES}/{override_id}", headers=ADMIN).json()
    assert (ended["state"], ended["ended_by"]) == ("ended", "alice")
    assert client.get(OVERRIDES, params={"state": "active"}).json()["items"] == []
    assert client.get(f"{OVERRIDES}/{override_id}").json()["state"] == "ended"


def test_ending_twice_is_a_409(client: TestClient) -> None:
    create_deployment(client)
    override_id = client.post(
        OVERRIDES, json={"kind": "freeze", "duration_s": 600, "reason": "x"}, headers=ADMIN
    ).json()["id"]
    client.delete(f"{OVERRIDES}/{override_id}", headers=ADMIN)
    assert_problem(client.delete(f"{OVERRIDES}/{override_id}", headers=ADMIN), 409, "already ended")


def test_unknown_override_is_a_404(client: TestClient) -> None:
    create_deployment(client)
    assert_problem(client.get(f"{OVERRIDES}/999"), 404, "override 999")
    assert_problem(client.delete(f"{OVERRIDES}/999", headers=ADMIN), 404)


def test_override_of_unknown_deployment_is_a_404(client: TestClient) -> None:
    response = client.post(
        f"{API}/deployments/nope/overrides",
        json={"kind": "freeze", "duration_s": 60, "reason": "x"},
        headers=ADMIN,
    )
    assert_problem(response, 404, "nope")
