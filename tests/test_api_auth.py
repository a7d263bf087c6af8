"""Auth of the REST API: admin tokens change, read tokens read, nothing runs open, no token is logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.auth import AuthError, Role, TokenAuthenticator, parse_tokens
from tests.api_support import (
    ADMIN,
    ADMIN_TOKEN,
    API,
    READ_TOKEN,
    READER,
    ClientFactory,
    assert_problem,
    client,
    create_deployment,
    make_client,
)

__all__ = ["client", "make_client"]  # fixtures

NEW = {"name": "digits", "model": "digits_mlp"}


def test_named_and_bare_tokens_get_identities() -> None:
    credentials = parse_tokens("alice:t1, t2\n# comment\nbob:t3", Role.ADMIN)
    auth = TokenAuthenticator(credentials, protect_reads=False)
    assert [auth.identify(f"Bearer {t}") for t in ("t1", "t2", "t3")] == [c.principal for c in credentials]
    assert [c.principal.name for c in credentials] == ["alice", "admin-2", "bob"]


def test_unknown_token_is_rejected_with_401() -> None:
    auth = TokenAuthenticator(parse_tokens("alice:t1", Role.ADMIN), protect_reads=False)
    with pytest.raises(AuthError) as raised:
        auth.identify("Bearer t2")
    assert raised.value.status == 401


def test_change_without_a_token_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    response = client.post(f"{API}/deployments", json=NEW)
    assert_problem(response, 401, "Bearer")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_change_with_a_wrong_token_is_401(client: TestClient) -> None:
    response = client.post(f"{API}/deployments", json=NEW, headers={"Authorization": "Bearer nope"})
    assert_problem(response, 401, "not valid")


def test_change_with_a_malformed_header_is_401(client: TestClient) -> None:
    response = client.post(f"{API}/deployments", json=NEW, headers={"Authorization": ADMIN_TOKEN})
    assert_problem(response, 401, "Bearer <token>")


def test_change_with_a_read_token_is_403(client: TestClient) -> None:
    response = client.post(f"{API}/deployments", json=NEW, headers=READER)
    assert_problem(response, 403, "viewer")


def test_admin_token_holder_becomes_the_author(client: TestClient) -> None:
    create_deployment(client)
    versions = client.get(f"{API}/deployments/digits/policy/versions").json()["items"]
    assert versions[0]["author"] == "alice"


def test_without_any_admin_token_changes_are_refused_with_how_to_configure(
    make_client: ClientFactory,
) -> None:
    client = make_client(admin_tokens="", read_tokens="")
    response = client.post(f"{API}/deployments", json=NEW, headers=ADMIN)
    assert_problem(response, 401, "PREWARM_ADMIN_TOKENS")


def test_admin_tokens_file_is_read(make_client: ClientFactory, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# operators\ncarol:file-token-3\n")
    client = make_client(admin_tokens="", admin_tokens_file=str(tokens))
    response = client.post(f"{API}/deployments", json=NEW, headers={"Authorization": "Bearer file-token-3"})
    assert response.status_code == 201, response.text
    assert client.get(f"{API}/deployments/digits/policy").json()["author"] == "carol"


def test_reads_are_open_by_default(client: TestClient) -> None:
    assert client.get(f"{API}/deployments").status_code == 200


def test_protected_reads_need_a_token(make_client: ClientFactory) -> None:
    client = make_client(protect_reads=True)
    assert_problem(client.get(f"{API}/deployments"), 401, "PREWARM_PROTECT_READS")
    assert client.get(f"{API}/deployments", headers=READER).status_code == 200
    assert client.get(f"{API}/deployments", headers=ADMIN).status_code == 200


def test_health_is_open_even_with_protected_reads(make_client: ClientFactory) -> None:
    assert make_client(protect_reads=True).get(f"{API}/health").json()["status"] == "ok"


def test_no_token_appears_in_the_logs(make_client: ClientFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client()
    create_deployment(client)
    client.post(f"{API}/deployments", json=NEW, headers={"Authorization": "Bearer wrong-token-xyz"})
    client.post(f"{API}/deployments", json=NEW, headers=READER)
    text = caplog.text
    assert "alice" in text  # the author is logged ...
    for secret in (ADMIN_TOKEN, READ_TOKEN, "wrong-token-xyz"):
        assert secret not in text  # ... never a token
