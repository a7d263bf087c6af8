"""compose.yaml, the Dockerfile and the Prometheus config, checked without a Docker engine.

No engine runs here, so these tests read the files as Compose and Prometheus would: services, images and build
contexts, commands (parsed by prewarm's real CLI), ports, health checks, restart policies, start-up order, the
environment each service needs, secrets, and the scrape targets (plus ``promtool check config``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from prewarm.cli import build_parser
from prewarm.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DOCS = ROOT / "docs" / "production.md"
PREWARM_SERVICES = ("migrate", "controller", "gateway", "replica-1", "replica-2")
METRICS_SERVICES = ("controller", "gateway", "replica-1", "replica-2")  # serve /metrics
LONG_RUNNING = ("postgres", "controller", "gateway", "replica-1", "replica-2", "prometheus")
USES_STORE = ("migrate", "controller", "gateway")
REQUIRED_SECRETS = ("POSTGRES_PASSWORD", "PREWARM_ADMIN_TOKENS")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")
TEST_ENV = {"POSTGRES_PASSWORD": "pw-from-env", "PREWARM_ADMIN_TOKENS": "ops:token-from-env"}


class MissingVariable(LookupError):
    """A ``${VAR:?message}`` variable is not set: Compose refuses to start."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (``${VAR}``, ``:-``/``-`` defaults, ``:?``/``?`` required), recursively."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        found = env.get(name)
        unset = found is None or (found == "" and operator is not None and operator.startswith(":"))
        if operator in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {argument}")
        if operator in (":-", "-") and unset:
            return str(interpolate(argument, env))
        return found or ""

    return VARIABLE.sub(replace, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    resolved: dict[str, dict[str, Any]] = interpolate(raw, TEST_ENV)["services"]
    return resolved


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


def _parsed(parser: argparse.ArgumentParser, service: dict[str, Any]) -> argparse.Namespace:
    return parser.parse_args([str(part) for part in service["command"]])


def _listen_port(parser: argparse.ArgumentParser, service: dict[str, Any]) -> int:
    return int(_parsed(parser, service).port)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "write environment as a mapping"
    return {key: str(value) for key, value in environment.items()}


def test_compose_defines_postgres_controller_gateway_replicas_and_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == {
        "postgres",
        "migrate",
        "controller",
        "gateway",
        "replica-1",
        "replica-2",
        "prometheus",
    }


def test_prewarm_services_build_the_root_dockerfile_into_one_image(
    services: dict[str, dict[str, Any]],
) -> None:
    images = {services[name]["image"] for name in PREWARM_SERVICES}
    assert len(images) == 1
    for name in PREWARM_SERVICES:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"


@pytest.mark.parametrize("name", ["postgres", "prometheus"])
def test_third_party_images_are_pinned_to_a_version(services: dict[str, dict[str, Any]], name: str) -> None:
    image = services[name]["image"]
    repository, _, tag = image.partition(":")
    assert tag and tag != "latest" and re.search(r"\d", tag), image
    assert repository in ("postgres", "prom/prometheus")


@pytest.mark.parametrize("name", PREWARM_SERVICES)
def test_prewarm_commands_parse_with_the_real_cli(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]], name: str
) -> None:
    args = _parsed(parser, services[name])
    assert callable(args.handler)
    expected = {"migrate": "db", "controller": "controller", "gateway": "gateway"}.get(name, "replica")
    assert args.command == expected


@pytest.mark.parametrize("name", ["controller", "gateway", "replica-1", "replica-2"])
def test_servers_listen_on_all_interfaces_inside_their_container(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]], name: str
) -> None:
    assert _parsed(parser, services[name]).host == "0.0.0.0"


def test_gateway_forwards_to_both_replicas_on_their_ports(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]]
) -> None:
    upstreams = _parsed(parser, services["gateway"]).upstream
    expected = {f"{name}:{_listen_port(parser, services[name])}" for name in ("replica-1", "replica-2")}
    assert set(upstreams) == expected


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_a_healthcheck_and_restart_policy(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    assert service["restart"] in ("always", "unless-stopped", "on-failure")
    check = service["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)


def test_migration_runs_once_and_is_not_restarted(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["restart"] == "no"  # quoted in the file: a bare no is YAML's false
    assert "healthcheck" not in services["migrate"]


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("controller", "/api/v1/health"),
        ("gateway", "/v2/health/ready"),
        ("replica-1", "/v2/health/ready"),
        ("replica-2", "/v2/health/ready"),
    ],
)
def test_healthchecks_probe_the_port_each_service_listens_on(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]], name: str, path: str
) -> None:
    probe = " ".join(services[name]["healthcheck"]["test"])
    assert f"127.0.0.1:{_listen_port(parser, services[name])}{path}" in probe


def test_postgres_healthcheck_asks_pg_isready_for_the_prewarm_database(
    services: dict[str, dict[str, Any]],
) -> None:
    probe = " ".join(services["postgres"]["healthcheck"]["test"])
    environment = _environment(services["postgres"])
    assert "pg_isready" in probe
    assert f"-U {environment['POSTGRES_USER']}" in probe and f"-d {environment['POSTGRES_DB']}" in probe
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])


def test_controller_starts_after_postgres_is_healthy_and_the_migration_completed(
    services: dict[str, dict[str, Any]],
) -> None:
    depends = services["controller"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_gateway_starts_after_the_migration_and_healthy_replicas(services: dict[str, dict[str, Any]]) -> None:
    depends = services["gateway"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["replica-1"]["condition"] == depends["replica-2"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", USES_STORE)
def test_services_using_the_store_get_a_postgres_url_with_the_postgres_password(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    url = _environment(services[name])["PREWARM_DATABASE_URL"]
    postgres = _environment(services["postgres"])
    expected = (
        f"postgresql+psycopg://{postgres['POSTGRES_USER']}:{TEST_ENV['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert url == expected


def test_controller_gets_the_admin_tokens_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    assert _environment(services["controller"])["PREWARM_ADMIN_TOKENS"] == TEST_ENV["PREWARM_ADMIN_TOKENS"]


@pytest.mark.parametrize("missing", REQUIRED_SECRETS)
def test_compose_refuses_to_start_without_each_secret(raw: dict[str, Any], missing: str) -> None:
    env = {k: v for k, v in TEST_ENV.items() if k != missing}
    with pytest.raises(MissingVariable, match=missing):
        interpolate(raw, env)


def test_no_secret_is_written_in_the_file(raw: dict[str, Any]) -> None:
    secrets = {
        f"{name}.{key}": str(value)
        for name, service in raw["services"].items()
        for key, value in service.get("environment", {}).items()
        if re.search(r"PASSWORD|TOKEN|SECRET|DATABASE_URL", key)
    }
    assert len(secrets) >= 5  # postgres, controller (url, admin and read tokens), migrate, gateway
    for where, value in secrets.items():
        assert "${" in value and not re.search(r"://[^:]+:[^$]", value), f"{where} = {value}"


def test_every_prewarm_setting_in_compose_is_a_real_setting(services: dict[str, dict[str, Any]]) -> None:
    known = {f"PREWARM_{name.upper()}" for name in Settings.model_fields}
    used = {
        key for name in PREWARM_SERVICES for key in _environment(services[name]) if key.startswith("PREWARM_")
    }
    assert used and used <= known, sorted(used - known)


def test_published_ports_are_the_controller_gateway_and_prometheus(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]]
) -> None:
    published = {name: service.get("ports", []) for name, service in services.items()}
    assert published["controller"] == [f"127.0.0.1:8080:{_listen_port(parser, services['controller'])}"]
    assert published["gateway"] == [f"127.0.0.1:8000:{_listen_port(parser, services['gateway'])}"]
    assert published["prometheus"] == ["127.0.0.1:9090:9090"]
    assert not published["postgres"] and not published["replica-1"] and not published["replica-2"]


def test_every_variable_compose_reads_is_documented() -> None:
    names = set(VARIABLE.findall(COMPOSE.read_text()))
    docs = DOCS.read_text()
    undocumented = sorted(name for name, _, _ in names if f"`{name}`" not in docs)
    assert not undocumented


def _scrape_targets() -> dict[str, set[str]]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {
        job["job_name"]: {t for static in job["static_configs"] for t in static["targets"]}
        for job in config["scrape_configs"]
    }


def test_prometheus_mounts_the_repository_config(services: dict[str, dict[str, Any]]) -> None:
    mounts = [m.split(":") for m in services["prometheus"]["volumes"]]
    config_mounts = [m for m in mounts if m[1] == "/etc/prometheus/prometheus.yml"]
    assert config_mounts and (ROOT / config_mounts[0][0]).resolve() == PROMETHEUS_CONFIG
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


@pytest.mark.parametrize("name", METRICS_SERVICES)
def test_prometheus_scrapes_every_service_that_serves_metrics(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]], name: str
) -> None:
    targets = set().union(*_scrape_targets().values())
    assert f"{name}:{_listen_port(parser, services[name])}" in targets


def test_replica_targets_carry_the_deployment_label_the_prometheus_source_selects() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    replicas = next(job for job in config["scrape_configs"] if job["job_name"] == "prewarm-replicas")
    assert all(static["labels"]["deployment"] == "digits" for static in replicas["static_configs"])
    assert Settings.model_fields["prometheus_selector"].default == 'deployment="$deployment"'


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/ensure-system.sh)"
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_a_non_root_prewarm_image_with_migrations_and_model() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    for needed in ("alembic.ini", "migrations", "models", "prewarm", "inference", "forecaster", "controller"):
        assert re.search(rf"^COPY .*\b{re.escape(needed)}\b", text, re.M), needed
    assert re.search(r"^RUN pip install (-e )?\.", text, re.M)
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert re.search(r'^ENTRYPOINT \["prewarm"\]', text, re.M)
    assert (ROOT / "models" / "onnx" / "digits_mlp" / "model.onnx").is_file()


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "*.db"} <= ignored


def test_the_test_environment_does_not_leak_into_the_check() -> None:
    # The interpolation above uses TEST_ENV only, never the real environment of the test run.
    assert all(os.environ.get(name) != value for name, value in TEST_ENV.items())
