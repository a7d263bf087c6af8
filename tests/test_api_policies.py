"""Policies over HTTP: get, replace, patch (a version each), versions, rollback, validation, If-Match."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api_support import ADMIN, API, assert_problem, client, create_deployment, make_client

__all__ = ["client", "make_client"]  # fixtures

POLICY = f"{API}/deployments/digits/policy"


def test_get_returns_the_current_policy_with_an_etag(client: TestClient) -> None:
    create_deployment(client)
    response = client.get(POLICY)
    assert response.json()["version"] == 1 and response.json()["policy"]["max_replicas"] == 6
    assert response.headers["etag"] == '"1"'


def test_put_replaces_the_policy_as_a_new_version_with_a_comment(client: TestClient) -> None:
    create_deployment(client)
    response = client.put(
        f"{POLICY}?comment=peak+season", json={"max_replicas": 20, "tolerance": 0.2}, headers=ADMIN
    )
    body = response.json()
    assert (body["version"], body["comment"], body["author"]) == (2, "peak season", "alice")
    assert body["policy"]["tolerance"] == 0.2 and body["policy"]["min_replicas"] == 1  # omitted: default


def test_put_moves_the_deployment_bounds(client: TestClient) -> None:
    create_deployment(client)
    client.put(POLICY, json={"min_replicas": 3, "max_replicas": 7}, headers=ADMIN)
    got = client.get(f"{API}/deployments/digits").json()
    assert (got["min_replicas"], got["max_replicas"], got["policy_version"]) == (3, 7, 2)


def test_patch_changes_only_the_given_fields(client: TestClient) -> None:
    create_deployment(client, policy={"tolerance": 0.2})
    body = client.patch(POLICY, json={"target_utilisation": 0.5}, headers=ADMIN).json()
    assert body["version"] == 2
    assert (body["policy"]["target_utilisation"], body["policy"]["tolerance"]) == (0.5, 0.2)


def test_patch_that_breaks_a_cross_field_rule_is_a_422_naming_the_field(client: TestClient) -> None:
    create_deployment(client)
    body = assert_problem(
        client.patch(POLICY, json={"cpu_scale_down_percent": 90}, headers=ADMIN), 422, "flap"
    )
    assert body["errors"][0]["loc"] == ["body", "cpu_scale_down_percent"]


def test_out_of_range_threshold_is_a_422_with_its_path(client: TestClient) -> None:
    create_deployment(client)
    body = assert_problem(client.put(POLICY, json={"target_utilisation": 1.5}, headers=ADMIN), 422)
    assert body["errors"][0]["pointer"] == "/target_utilisation"


def test_non_positive_window_and_capacity_are_422(client: TestClient) -> None:
    create_deployment(client)
    body = assert_problem(
        client.put(POLICY, json={"stable_window_s": 0, "replica_capacity_rps": -1}, headers=ADMIN),
        422,
        "and 1 more",
    )
    assert sorted(e["pointer"] for e in body["errors"]) == ["/replica_capacity_rps", "/stable_window_s"]


def test_nan_in_a_body_is_a_422_not_a_stored_value(client: TestClient) -> None:
    create_deployment(client)
    response = client.put(
        POLICY,
        content=b'{"replica_capacity_rps": NaN}',
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert_problem(response, 422, "NaN")
    assert client.get(POLICY).json()["version"] == 1


def test_huge_number_is_a_422(client: TestClient) -> None:
    create_deployment(client)
    response = client.put(
        POLICY,
        content=b'{"replica_capacity_rps": 1e400}',
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert_problem(response, 422, "out of range")


def test_versions_are_listed_newest_first(client: TestClient) -> None:
    create_deployment(client)
    client.patch(POLICY, json={"max_replicas": 9}, headers=ADMIN)
    items = client.get(f"{POLICY}/versions").json()["items"]
    assert [(v["version"], v["policy"]["max_replicas"]) for v in items] == [(2, 9), (1, 6)]


def test_one_version_can_be_read(client: TestClient) -> None:
    create_deployment(client)
    client.patch(POLICY, json={"max_replicas": 9}, headers=ADMIN)
    assert client.get(f"{POLICY}/versions/1").json()["policy"]["max_replicas"] == 6


def test_missing_version_is_a_404(client: TestClient) -> None:
    create_deployment(client)
    assert_problem(client.get(f"{POLICY}/versions/7"), 404, "version 7")


def test_rollback_copies_an_old_version_as_the_newest(client: TestClient) -> None:
    create_deployment(client)
    client.patch(POLICY, json={"max_replicas": 9}, headers=ADMIN)
    body = client.post(f"{POLICY}:rollback", json={"version": 1}, headers=ADMIN).json()
    assert (body["version"], body["policy"]["max_replicas"], body["comment"]) == (
        3,
        6,
        "rollback to version 1",
    )
    assert client.get(f"{API}/deployments/digits").json()["max_replicas"] == 6


def test_rollback_to_a_missing_version_is_a_404(client: TestClient) -> None:
    create_deployment(client)
    assert_problem(client.post(f"{POLICY}:rollback", json={"version": 5}, headers=ADMIN), 404)


def test_if_match_with_a_stale_version_is_a_412_and_changes_nothing(client: TestClient) -> None:
    create_deployment(client)
    client.patch(POLICY, json={"max_replicas": 9}, headers=ADMIN)
    response = client.patch(POLICY, json={"max_replicas": 3}, headers={**ADMIN, "If-Match": '"1"'})
    assert_problem(response, 412, "version 2")
    assert client.get(POLICY).json()["policy"]["max_replicas"] == 9


def test_if_match_with_the_current_version_applies(client: TestClient) -> None:
    create_deployment(client)
    response = client.patch(POLICY, json={"max_replicas": 3}, headers={**ADMIN, "If-Match": '"1"'})
    assert response.status_code == 200 and response.headers["etag"] == '"2"'


def test_policy_of_unknown_deployment_is_a_404(client: TestClient) -> None:
    assert_problem(client.put(f"{API}/deployments/nope/policy", json={}, headers=ADMIN), 404)


def test_the_forecast_schedule_is_part_of_the_policy(client: TestClient) -> None:
    create_deployment(client)
    body = client.patch(
        POLICY, json={"forecast_refit_interval_s": 600, "forecast_history_s": 86400, "forecast_model": "profile"},
        headers=ADMIN,
    ).json()  # fmt: skip
    assert (
        body["policy"]["forecast_refit_interval_s"] == 600 and body["policy"]["forecast_model"] == "profile"
    )
