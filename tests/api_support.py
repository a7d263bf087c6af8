"""Shared pieces of the REST API tests: an app on the test database, tokens, and shortcuts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from controller.api import create_app
from controller.api.runtime import ControllerRuntime
from prewarm.settings import Settings

ADMIN_TOKEN = "admin-secret-token-1"
READ_TOKEN = "read-secret-token-2"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READER = {"Authorization": f"Bearer {READ_TOKEN}"}
API = "/api/v1"

ClientFactory = Callable[..., TestClient]


def settings_for(engine: Engine, **changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "admin_tokens": f"alice:{ADMIN_TOKEN}",
        "read_tokens": f"viewer:{READ_TOKEN}",
    }
    fields.update(changes)
    return Settings(**fields)


@pytest.fixture
def make_client(engine: Engine) -> Iterator[ClientFactory]:
    """Builds a client for an app on the test database; keyword arguments change the settings."""

    def make(runtime: ControllerRuntime | None = None, **changes: Any) -> TestClient:
        return TestClient(create_app(engine, settings=settings_for(engine, **changes), runtime=runtime))

    yield make


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    """An app with one admin token (alice) and one read token (viewer); reads open."""
    return make_client()


def create_deployment(client: TestClient, name: str = "digits", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "model": "digits_mlp", "min_replicas": 1, "max_replicas": 6}
    body.update(fields)
    response = client.post(f"{API}/deployments", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_problem(response: Any, status: int, detail_part: str = "") -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and a detail containing ``detail_part``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]
    assert detail_part in body.get("detail", ""), body
    return body
