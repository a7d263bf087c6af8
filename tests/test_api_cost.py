"""Cost over HTTP: interruption notices (validated), cost by pool over a range, the reserved-capacity plan."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from prewarm.cli import main as cli_main
from prewarm.db.models import Deployment, ScalingDecision
from prewarm.settings import get_settings
from tests.api_support import ADMIN, API, assert_problem, client, create_deployment, make_client

__all__ = ["client", "make_client"]  # fixtures

BASE = f"{API}/deployments/digits"
POOLS = [
    {"name": "reserved", "kind": "reserved", "price_per_replica_hour": 0.6, "max_replicas": 2},
    {"name": "spot", "kind": "spot", "price_per_replica_hour": 0.3},
    {"name": "on-demand", "kind": "on-demand", "price_per_replica_hour": 1.0},
]


def pooled(client: TestClient) -> None:
    create_deployment(client)
    response = client.patch(
        f"{BASE}/policy",
        json={"pools": POOLS, "price_per_replica_hour": 1.0, "max_replicas": 6},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text


def test_an_interruption_is_stored_once_per_replica(client: TestClient) -> None:
    pooled(client)
    body = {"pool": "spot", "replica": "digits-spot-abc", "notice_s": 30}
    first = client.post(f"{BASE}/interruptions", json=body, headers=ADMIN)
    assert first.status_code == 201, first.text
    out = first.json()
    assert (out["pool"], out["count"], out["notice_s"], out["duplicate"]) == ("spot", 1, 30.0, False)
    leaves = datetime.fromisoformat(out["leaves_at"]) - datetime.fromisoformat(out["received_at"])
    assert leaves == timedelta(seconds=30)
    again = client.post(f"{BASE}/interruptions", json=body, headers=ADMIN)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    default = client.post(f"{BASE}/interruptions", json={"pool": "spot", "count": 3}, headers=ADMIN).json()
    assert (default["count"], default["notice_s"]) == (3, 120.0)  # the policy's interruption_notice_s


def test_bad_interruptions_are_refused_with_what_was_wrong(client: TestClient) -> None:
    pooled(client)
    url = f"{BASE}/interruptions"
    body = assert_problem(client.post(url, json={"pool": "gpu"}, headers=ADMIN), 422)
    assert "no pool 'gpu'" in body["errors"][0]["message"]
    body = assert_problem(client.post(url, json={"pool": "on-demand"}, headers=ADMIN), 422)
    assert "not spot" in body["errors"][0]["message"]
    assert_problem(client.post(url, json={"pool": "spot", "notice_s": 0}, headers=ADMIN), 422)
    assert_problem(client.post(url, json={"pool": "spot", "count": 0}, headers=ADMIN), 422)
    assert_problem(client.post(url, json={"pool": "spot", "replica": "a", "count": 2}, headers=ADMIN), 422)
    assert_problem(client.post(url, json={"pool": "spot", "why": "x"}, headers=ADMIN), 422)
    assert_problem(client.post(url, json={"pool": "spot"}), 401)
    assert_problem(
        client.post(f"{API}/deployments/nope/interruptions", json={"pool": "spot"}, headers=ADMIN), 404
    )


def test_interruptions_need_pools(client: TestClient) -> None:
    create_deployment(client)
    body = assert_problem(client.post(f"{BASE}/interruptions", json={"pool": "spot"}, headers=ADMIN), 422)
    assert "sets no pools" in body["errors"][0]["message"]


def test_cost_by_pool_from_the_decisions(client: TestClient, engine: Engine) -> None:
    pooled(client)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    with engine.begin() as connection:
        deployment_id = connection.scalar(select(Deployment.id).where(Deployment.name == "digits"))
        rows = [
            (start, 4, {"counts": {"reserved": 2, "spot": 2, "on-demand": 0}}, True),
            (
                start + timedelta(hours=1),
                6,
                {"counts": {"reserved": 2, "spot": 2, "on-demand": 1}, "leaving": {"spot": 1}},
                True,
            ),
            (
                start + timedelta(hours=1, minutes=30),
                9,
                {"counts": {"on-demand": 9}},
                False,
            ),  # dry-run: not acted on
        ]
        connection.execute(
            insert(ScalingDecision),
            [
                {
                    "deployment_id": deployment_id,
                    "ts": ts,
                    "current": 0,
                    "desired": d,
                    "applied": applied,
                    "source": "predictive",
                    "reasons": [],
                    "placement": placement,
                }
                for ts, d, placement, applied in rows
            ],
        )
    since = (start + timedelta(minutes=30)).isoformat()
    until = (start + timedelta(hours=2)).isoformat()
    response = client.get(f"{BASE}/cost", params={"since": since, "until": until})
    assert response.status_code == 200, response.text
    body = response.json()
    pools = {p["pool"]: p for p in body["pools"]}
    assert pools["reserved"]["replica_seconds"] == 2 * 1.5 * 3600
    assert pools["spot"]["replica_seconds"] == 2 * 1800 + 3 * 3600  # the leaving replica runs until it goes
    assert pools["on-demand"]["cost"] == 1.0
    assert body["total"] == 1.8 + (0.3 * 2 * 0.5 + 0.3 * 3) + 1.0
    assert body["on_demand_only"] == 4 * 0.5 + 6 * 1.0
    assert body["saving_vs_on_demand"] == 1 - body["total"] / body["on_demand_only"]


def test_cost_range_is_validated(client: TestClient) -> None:
    pooled(client)
    now = datetime.now(UTC)
    assert_problem(
        client.get(
            f"{BASE}/cost", params={"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()}
        ),
        422,
    )
    assert_problem(client.get(f"{BASE}/cost", params={"since": "yesterday"}), 422)
    assert_problem(client.get(f"{BASE}/cost", params={"since": "2026-01-01T00:00:00"}), 422)  # no zone
    assert_problem(client.get(f"{BASE}/cost", params={"until": (now + timedelta(days=2)).isoformat()}), 422)


def test_cost_plan_from_stored_history(client: TestClient) -> None:
    pooled(client)
    client.patch(
        f"{BASE}/policy", json={"replica_capacity_rps": 100.0, "target_utilisation": 1.0}, headers=ADMIN
    )
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    samples = []
    for h in range(1, 25):  # the last 24 whole hours: 16 need 3 replicas, 8 need 1
        ts = (hour - timedelta(hours=h)).timestamp() + 60
        samples.append({"metric": "rps", "ts": ts, "value": 300.0 if h <= 16 else 100.0})
    assert client.post(f"{BASE}/samples", json={"samples": samples}, headers=ADMIN).status_code in (200, 201)
    body = client.get(f"{BASE}/cost/plan", params={"days": 1, "basis": "demand"}).json()
    assert body["hours"] == 24 and body["peak_replicas"] == 3
    assert body["recommended_reserved"] == 3  # 16/24 of the hours > 0.6 / 1.0
    assert body["options"][0]["reserved"] == 3
    assert_problem(client.get(f"{BASE}/cost/plan", params={"days": 0}), 422)


def hourly_history(engine: Engine, placement: Callable[[int], dict[str, Any] | None]) -> None:
    """4 replicas for 18 of the last 24 hours, 1 for the other 6; ``placement(h)`` is the decision h hours ago's."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with engine.begin() as connection:
        deployment_id = connection.scalar(select(Deployment.id).where(Deployment.name == "digits"))
        connection.execute(
            insert(ScalingDecision),
            [
                {
                    "deployment_id": deployment_id,
                    "ts": hour - timedelta(hours=h),
                    "current": 0,
                    "desired": 4 if h <= 18 else 1,
                    "applied": True,
                    "source": "predictive",
                    "reasons": [],
                    "placement": placement(h),
                }
                for h in range(1, 25)
            ],
        )


def test_cost_plan_from_the_replicas_run(client: TestClient, engine: Engine) -> None:
    pooled(client)
    hourly_history(engine, lambda h: None)
    body = client.get(f"{BASE}/cost/plan", params={"days": 1}).json()
    assert body["basis"] == "replicas" and body["hours"] == 24
    assert body["recommended_reserved"] == 4  # 18/24 = 0.75 of the time > 0.6
    assert_problem(client.get(f"{BASE}/cost/plan", params={"basis": "guess"}), 422)


def split_history(engine: Engine) -> None:
    """The same hours, the spot bound keeping 2 of the 4 replicas; the 1 of the other hours kept off spot."""
    hourly_history(
        engine,
        lambda h: {
            "counts": {"reserved": 2, "spot": 2, "on-demand": 0} if h <= 18 else {"reserved": 1},
            "leaving": {},
            "unplaced": 0,
            "non_spot": 2 if h <= 18 else 1,
        },
    )


def test_cost_plan_knows_what_spot_would_carry(client: TestClient, engine: Engine) -> None:
    pooled(client)
    split_history(engine)
    body = client.get(f"{BASE}/cost/plan", params={"days": 1}).json()
    # level 2: kept off spot 18/24 = 0.75 of the time > 0.6; levels 3 and 4 would replace spot: 0.3 x 0.75 < 0.6
    assert body["recommended_reserved"] == 2 and body["price_spot"] == 0.3
    assert body["spot_eligible_share"] == 0.4615  # 18 x 2 of 18 x 4 + 6 x 1 replica-hours above the bound
    best = body["options"][0]
    assert best["reserved"] == 2 and best["mean_on_spot"] == 1.5 and best["mean_on_demand"] == 0.0


def test_the_cli_plan_says_what_spot_carries(
    client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pooled(client)
    split_history(engine)
    monkeypatch.setenv("PREWARM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        assert cli_main(["cost", "plan", "--deployment", "digits", "--days", "1"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "spot costs 0.30 and may carry 46.2 % of the replica-hours" in out
    assert "recommendation: reserve 2 replicas" in out
    assert "| reserve 2 (break-even) | 2 | 1.50 | 0.00 |" in out
