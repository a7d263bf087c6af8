"""compose.yaml, the Dockerfile and the Prometheus config, checked without starting anything.

These tests read the files as ``docker stack deploy`` and Prometheus would: services and images, commands (parsed by
prewarm's real CLI), ports, health checks, restart policies, DNS round robin, the Docker socket of the controller,
the environment each service needs, secrets, and the scrape targets; the docker command line renders the file
(``docker stack config``, no engine needed) and ``promtool check config`` checks the Prometheus config. The stack
itself is brought up for real by tests/test_containers_stack.py.
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
PREWARM_SERVICES = ("migrate", "controller", "gateway", "replica")
METRICS_SERVICES = ("controller", "gateway")  # serve /metrics at a fixed name (the replicas: found by DNS)
LONG_RUNNING = ("postgres", "controller", "gateway", "replica", "prometheus")
USES_STORE = ("migrate", "controller", "gateway")
REQUIRED = ("POSTGRES_PASSWORD", "PREWARM_ADMIN_TOKENS", "DOCKER_GID")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")
TEST_ENV = {
    "POSTGRES_PASSWORD": "pw-from-env",
    "PREWARM_ADMIN_TOKENS": "ops:token-a,ci:token-b",
    "DOCKER_GID": "998",
}


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
    assert set(services) == {"postgres", "migrate", "controller", "gateway", "replica", "prometheus"}


def test_prewarm_services_share_one_image_whose_tag_is_a_variable(
    raw: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert {services[name]["image"] for name in PREWARM_SERVICES} == {"prewarm:0.1.0"}
    assert {raw["services"][name]["image"] for name in PREWARM_SERVICES} == {
        "prewarm:${PREWARM_IMAGE_TAG:-0.1.0}"
    }
    assert not any("build" in service for service in services.values())  # stack deploy builds nothing


@pytest.mark.parametrize(
    ("name", "variable", "default"),
    [
        ("postgres", "POSTGRES_IMAGE", "postgres:16.4"),
        ("prometheus", "PROMETHEUS_IMAGE", "prom/prometheus:v2.53.2"),
    ],
)
def test_third_party_images_are_variables_defaulting_to_pinned_public_images(
    raw: dict[str, Any], services: dict[str, dict[str, Any]], name: str, variable: str, default: str
) -> None:
    assert raw["services"][name]["image"] == f"${{{variable}:-{default}}}"
    assert services[name]["image"] == default
    assert interpolate(raw, {**TEST_ENV, variable: "local:1"})["services"][name]["image"] == "local:1"


@pytest.mark.parametrize("name", PREWARM_SERVICES)
def test_prewarm_commands_parse_with_the_real_cli(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]], name: str
) -> None:
    args = _parsed(parser, services[name])
    assert callable(args.handler)
    expected = {"migrate": "db", "controller": "controller", "gateway": "gateway"}.get(name, "replica")
    assert args.command == expected


@pytest.mark.parametrize("name", ["controller", "gateway", "replica"])
def test_servers_listen_on_all_interfaces_inside_their_container(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]], name: str
) -> None:
    assert _parsed(parser, services[name]).host == "0.0.0.0"


def test_gateway_follows_the_replica_tasks_by_dns_on_their_port(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]]
) -> None:
    args = _parsed(parser, services["gateway"])
    assert args.discover == f"replica:{_listen_port(parser, services['replica'])}"
    assert not args.upstream


@pytest.mark.parametrize("name", [*LONG_RUNNING, "migrate"])
def test_every_service_is_reached_by_dns_round_robin_on_the_stack_network(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    # No virtual IPs: they need IPVS in the kernel, which some hosts (this one) lack.
    assert services[name]["deploy"]["endpoint_mode"] == "dnsrr"
    assert services[name]["networks"] == ["prewarm"]


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_a_healthcheck_and_are_restarted(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    assert service["deploy"]["restart_policy"]["condition"] == "any"
    check = service["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)


def test_migration_is_retried_until_it_succeeds_then_stays_done(services: dict[str, dict[str, Any]]) -> None:
    policy = services["migrate"]["deploy"]["restart_policy"]
    assert policy["condition"] == "on-failure" and int(policy["max_attempts"]) >= 10
    assert "healthcheck" not in services["migrate"]


@pytest.mark.parametrize(
    ("name", "path"),
    [("controller", "/api/v1/health"), ("gateway", "/v2/health/ready"), ("replica", "/v2/health/ready")],
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


def test_replicas_are_one_service_the_controller_scales(services: dict[str, dict[str, Any]]) -> None:
    replica = services["replica"]
    assert (
        int(replica["deploy"]["replicas"]) == 2
    )  # REPLICAS, default 2: where it starts; then the controller
    assert replica["deploy"]["update_config"]["order"] == "start-first"
    assert "ports" not in replica


def test_controller_reaches_the_swarm_api_through_the_socket_in_its_group_not_as_root(
    services: dict[str, dict[str, Any]],
) -> None:
    controller = services["controller"]
    [socket] = [v for v in controller["volumes"] if isinstance(v, dict)]
    assert socket == {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}
    assert controller["user"] == f"10001:{TEST_ENV['DOCKER_GID']}"
    assert "node.role == manager" in controller["deploy"]["placement"]["constraints"]


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


@pytest.mark.parametrize("missing", REQUIRED)
def test_compose_refuses_to_start_without_each_required_variable(raw: dict[str, Any], missing: str) -> None:
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


def test_published_ports_are_the_controller_gateway_and_prometheus_on_their_node(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]]
) -> None:
    published = {name: service.get("ports", []) for name, service in services.items()}
    expected = {
        "controller": (8080, _listen_port(parser, services["controller"])),
        "gateway": (8000, _listen_port(parser, services["gateway"])),
        "prometheus": (9090, 9090),
    }
    for name, (outside, inside) in expected.items():
        # mode host: published by the node running the task, no routing mesh (it needs IPVS too)
        assert published[name] == [{"target": inside, "published": str(outside), "mode": "host"}]
    assert not published["postgres"] and not published["replica"] and not published["migrate"]


def test_every_variable_compose_reads_is_documented() -> None:
    names = set(VARIABLE.findall(COMPOSE.read_text()))
    docs = DOCS.read_text()
    undocumented = sorted(name for name, _, _ in names if f"`{name}`" not in docs)
    assert not undocumented


def _docker_stack_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker command line here")
    return subprocess.run(
        [docker, "stack", "config", "--compose-file", str(COMPOSE)], capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env},
        cwd=ROOT, check=False,
    )  # fmt: skip


def test_the_docker_command_line_renders_the_stack_as_these_tests_read_it(
    services: dict[str, dict[str, Any]],
) -> None:
    result = _docker_stack_config(TEST_ENV)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)["services"]
    for name, service in services.items():  # what docker makes of every variable is what interpolate() made
        assert rendered[name]["image"] == service["image"]
        assert rendered[name].get("environment", {}) == {
            k: str(v) for k, v in service.get("environment", {}).items()
        }
    assert rendered["controller"]["user"] == services["controller"]["user"]
    assert rendered["replica"]["deploy"]["replicas"] == 2
    assert rendered["gateway"]["ports"][0]["published"] == 8000


@pytest.mark.parametrize("missing", REQUIRED)
def test_docker_refuses_the_stack_without_each_required_variable(missing: str) -> None:
    result = _docker_stack_config({k: v for k, v in TEST_ENV.items() if k != missing})
    assert result.returncode != 0 and f"required variable {missing} is missing a value" in result.stderr


def _prometheus_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return loaded


def test_prometheus_gets_the_repository_config(
    raw: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    config, alerts = services["prometheus"]["configs"]
    assert config["target"] == "/etc/prometheus/prometheus.yml"
    assert (ROOT / raw["configs"][config["source"]]["file"]).resolve() == PROMETHEUS_CONFIG
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    # The alert rules: where prometheus.yml's rule_files (relative to the config file) finds them.
    [rule_file] = _prometheus_config()["rule_files"]
    assert alerts["target"] == f"/etc/prometheus/{rule_file}"
    assert (ROOT / raw["configs"][alerts["source"]]["file"]).resolve() == PROMETHEUS_CONFIG.parent / rule_file


@pytest.mark.parametrize("name", METRICS_SERVICES)
def test_prometheus_scrapes_every_service_that_serves_metrics(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]], name: str
) -> None:
    targets = {t for job in _prometheus_config()["scrape_configs"] for s in job.get("static_configs", [])
               for t in s["targets"]}  # fmt: skip
    assert f"{name}:{_listen_port(parser, services[name])}" in targets


def test_prometheus_finds_every_replica_task_by_dns_with_the_deployment_label(
    parser: argparse.ArgumentParser, services: dict[str, dict[str, Any]]
) -> None:
    replicas = next(
        job for job in _prometheus_config()["scrape_configs"] if job["job_name"] == "prewarm-replicas"
    )
    [dns] = replicas["dns_sd_configs"]
    assert dns["names"] == ["replica"] and dns["type"] == "A"
    assert dns["port"] == _listen_port(parser, services["replica"])
    assert {"target_label": "deployment", "replacement": "digits"} in replicas["relabel_configs"]
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
    # The base is a build argument; the public Python image stays the default for users elsewhere.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    for needed in ("alembic.ini", "migrations", "models", "prewarm", "inference", "forecaster", "controller"):
        assert re.search(rf"^COPY .*\b{re.escape(needed)}\b", text, re.M), needed
    assert re.search(r"^RUN pip install (--no-deps )?(-e )?\.", text, re.M)
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert re.search(r'^ENTRYPOINT \["prewarm"\]', text, re.M)
    assert (ROOT / "models" / "onnx" / "digits_mlp" / "model.onnx").is_file()


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "*.db"} <= ignored


def test_the_test_environment_does_not_leak_into_the_check() -> None:
    # The interpolation above uses TEST_ENV only, never the real environment of the test run.
    assert all(os.environ.get(name) != value for name, value in TEST_ENV.items())
