"""Structured logs: JSON lines with the deployment and the decision's source, and no secret ever logged."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from prewarm.logs import JsonFormatter, RedactingFilter, settings_secrets
from prewarm.settings import Settings
from tests.controller_support import Controller, wait_for


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("controller.loop", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_deployment_and_the_source() -> None:
    line = JsonFormatter().format(_record("deployment %s: scaled %d -> %d", "digits", 2, 4,
                                          deployment="digits", source="predictive"))  # fmt: skip
    entry = json.loads(line)
    assert entry["message"] == "deployment digits: scaled 2 -> 4"
    assert (entry["deployment"], entry["source"], entry["level"]) == ("digits", "predictive", "INFO")


def test_passwords_in_urls_bearer_tokens_and_configured_secrets_are_redacted() -> None:
    redact = RedactingFilter(["tok-123456"])
    record = _record(
        "cannot connect to %s; got header Authorization: Bearer abc.def-ghi; token tok-123456",
        "postgresql+psycopg://prewarm:hunter22@db:5432/prewarm",
    )
    redact.filter(record)
    text = record.getMessage()
    assert "hunter22" not in text and "abc.def-ghi" not in text and "tok-123456" not in text
    assert "postgresql+psycopg://prewarm:***@db:5432/prewarm" in text


def test_settings_secrets_are_the_tokens_and_the_database_password() -> None:
    settings = Settings(
        admin_tokens="alice:adm-token-1,adm-token-2",  # type: ignore[arg-type]
        read_tokens="bob:read-token-3",  # type: ignore[arg-type]
        database_url="postgresql+psycopg://u:db-pass-4@h/d",
    )
    assert sorted(settings_secrets(settings)) == ["adm-token-1", "adm-token-2", "db-pass-4", "read-token-3"]


@pytest.mark.slow
def test_a_controller_logging_json_writes_json_lines_and_never_its_secrets(
    postgres_url: str, tmp_path: Path
) -> None:
    password, token = "pw-never-logged-9", "tok-never-logged-8"
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)  # trust auth
    controller = Controller(url, tmp_path, "json", PREWARM_LOG_FORMAT="json", PREWARM_ADMIN_TOKENS=f"ops:{token}",
                            PREWARM_READ_TOKENS="viewer:read-never-logged-7")  # fmt: skip
    controller.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{controller.url}/api/v1/deployments", headers=headers, timeout=30,
            json={"name": "digits", "model": "digits_mlp", "backend": "dry-run",
                  "backend_config": {"initial_replicas": 2}, "policy": {"decision_interval_s": 1}},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        now = time.time()
        samples = [{"metric": "cpu_percent", "ts": now - i, "value": 140.0} for i in range(60)]
        httpx.post(f"{controller.url}/api/v1/deployments/digits/samples", headers=headers,
                   json={"samples": samples}, timeout=30).raise_for_status()  # fmt: skip
        # A wrong token and a bad request are answered (and may be logged) without echoing secrets.
        assert httpx.delete(f"{controller.url}/api/v1/deployments/digits", timeout=10,
                            headers={"Authorization": "Bearer wrong-token-0"}).status_code == 401  # fmt: skip

        def scaled() -> list[dict[str, object]]:
            entries = [json.loads(line) for line in controller.log().splitlines() if line.strip()]
            return [e for e in entries if "scaled" in str(e.get("message"))]

        [decision, *_] = wait_for(scaled, timeout_s=30)
        assert decision["deployment"] == "digits" and decision["source"] in ("reactive", "panic")
    finally:
        controller.stop()
    log = controller.log()
    for secret in (password, token, "read-never-logged-7"):
        assert secret not in log
    assert all(json.loads(line) for line in log.splitlines() if line.strip())
