"""The decision log over HTTP: newest first, paged, filtered by time range, with reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from controller import repository
from prewarm.db.engine import session_factory
from tests.api_support import API, assert_problem, client, create_deployment, make_client

__all__ = ["client", "make_client"]  # fixtures

DECISIONS = f"{API}/deployments/digits/decisions"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def _record(engine: Engine, count: int) -> None:
    with session_factory(engine)() as session:
        deployment_id = repository.get_deployment(session, "digits").id
        for minute in range(count):
            repository.record_decision(
                session, deployment_id, ts=T0 + timedelta(minutes=minute), current=1, desired=minute + 1,
                applied=minute % 2 == 0, source="predictive",
                reasons=[{"step": "predictive", "detail": f"upper band needs {minute + 1}"}], policy_version=1,
            )  # fmt: skip
        session.commit()


def test_decisions_come_newest_first_with_reasons(client: TestClient, engine: Engine) -> None:
    create_deployment(client)
    _record(engine, 3)
    items = client.get(DECISIONS).json()["items"]
    assert [d["desired"] for d in items] == [3, 2, 1]
    assert items[0]["reasons"] == [{"step": "predictive", "detail": "upper band needs 3"}]


def test_pages_link_to_the_next_page(client: TestClient, engine: Engine) -> None:
    create_deployment(client)
    _record(engine, 5)
    first = client.get(DECISIONS, params={"limit": 2}).json()
    second = client.get(DECISIONS, params={"limit": 2, "offset": first["next_offset"]}).json()
    last = client.get(DECISIONS, params={"limit": 2, "offset": second["next_offset"]}).json()
    assert [d["desired"] for d in first["items"] + second["items"] + last["items"]] == [5, 4, 3, 2, 1]
    assert last["next_offset"] is None


def test_time_range_is_start_inclusive_end_exclusive(client: TestClient, engine: Engine) -> None:
    create_deployment(client)
    _record(engine, 5)
    params = {
        "start": (T0 + timedelta(minutes=1)).isoformat(),
        "end": (T0 + timedelta(minutes=3)).isoformat(),
    }
    assert [d["desired"] for d in client.get(DECISIONS, params=params).json()["items"]] == [3, 2]


def test_empty_time_range_is_a_422(client: TestClient) -> None:
    create_deployment(client)
    params = {"start": T0.isoformat(), "end": T0.isoformat()}
    body = assert_problem(client.get(DECISIONS, params=params), 422, "end must be after start")
    assert body["errors"][0]["loc"] == ["query", "end"]


def test_limit_out_of_range_is_a_422(client: TestClient) -> None:
    create_deployment(client)
    assert assert_problem(client.get(DECISIONS, params={"limit": 0}), 422)["errors"][0]["loc"] == [
        "query",
        "limit",
    ]


def test_decisions_of_unknown_deployment_are_a_404(client: TestClient) -> None:
    assert_problem(client.get(f"{API}/deployments/nope/decisions"), 404)
