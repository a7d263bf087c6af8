"""compose.yaml brought up for real as a Swarm stack (``docker stack deploy``), from images built here.

One stack per module: every service healthy, a replay of a real trace pushed through the gateway while the
controller scales the replica service through the Swarm backend, then faults on the running stack (a replica's
container killed under load, Postgres stopped and replaced), and at the end everything torn down and checked gone:
services, containers, networks, volumes, configs and secrets of the stack.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest

from inference.loadgen import LoadSummary, RateStep, run_open_loop
from inference.testing import digits_body
from prewarm.demo.replay import per_second, plan_days
from prewarm.traces import load_trace
from tests.containers_support import (
    ROOT,
    docker_cli,
    docker_client,  # noqa: F401 (fixture)
    leftovers,
    stack_images,  # noqa: F401 (fixture)
    unique_name,
    wait_for,
)

if TYPE_CHECKING:
    from docker import DockerClient

# The first test also builds the images (scripts/build-images.sh): on a machine that has none yet that is the debootstrap
# base and the Python dependencies, several minutes, beyond the suite's default 300 s per test.
pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.timeout(1500)]

LONG_RUNNING = ("postgres", "controller", "replica", "gateway", "prometheus")
MAX_REPLICAS = 4
CAPACITY_RPS = 20.0  # per replica, as the policy below says
TARGET_UTILISATION = 0.7  # the policy's default


@dataclass(frozen=True)
class Stack:
    name: str
    token: str
    controller: str  # base URL of the control API
    gateway: str
    prometheus: str

    def service(self, short: str) -> str:
        return f"{self.name}_{short}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def _http(url: str, *, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text.strip().startswith((b"{", b"[")) else text
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError as error:
        return 0, str(error)


def _service_ready(docker_client: DockerClient, service: str) -> bool:  # noqa: F811
    """Every task the service should run is running (for services with a health check: and healthy)."""
    found = docker_client.services.list(filters={"name": service})
    if not found:
        return False
    spec = found[0].attrs["Spec"]
    wanted = spec["Mode"]["Replicated"]["Replicas"]
    running = [
        t for t in found[0].tasks(filters={"desired-state": "running"}) if t["Status"]["State"] == "running"
    ]
    return len(running) == wanted


def _migrated(docker_client: DockerClient, service: str) -> bool:  # noqa: F811
    tasks = docker_client.services.get(service).tasks()
    return any(t["Status"]["State"] == "complete" and t["Status"]["ContainerStatus"].get("ExitCode") == 0
               for t in tasks)  # fmt: skip


def _replica_count(docker_client: DockerClient, stack: Stack) -> int:  # noqa: F811
    return int(
        docker_client.services.get(stack.service("replica")).attrs["Spec"]["Mode"]["Replicated"]["Replicas"]
    )


def _tear_down(docker_client: DockerClient, name: str) -> dict[str, list[str]]:  # noqa: F811
    """``docker stack rm``, then wait for Swarm to remove the tasks' containers and the network; the stack's named
    volumes are removed by hand (``stack rm`` keeps volumes). Returns whatever is left (empty when clean)."""
    docker_cli("stack", "rm", name)
    prefix = f"{name}_"
    wait_for(
        "the stack's services, containers and network to be removed",
        lambda: not {k: v for k, v in leftovers(docker_client, prefix).items() if k != "volumes"},
        timeout_s=180,
        interval_s=1.0,
    )
    for volume in docker_client.volumes.list():
        if volume.name.startswith(prefix):
            volume.remove()
    return leftovers(docker_client, prefix)


@pytest.fixture(scope="module")
def stack(docker_client: DockerClient, stack_images: dict[str, str]) -> Iterator[Stack]:  # noqa: F811
    name = unique_name("stack")
    token = secrets.token_hex(16)
    ports = {"GATEWAY_PORT": _free_port(), "CONTROLLER_PORT": _free_port(), "PROMETHEUS_PORT": _free_port()}
    env = {
        **stack_images,
        **{key: str(value) for key, value in ports.items()},
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "PREWARM_ADMIN_TOKENS": f"ops:{token}",
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "REPLICAS": "1",
    }
    started = time.monotonic()
    docker_cli("stack", "deploy", "--compose-file", str(ROOT / "compose.yaml"), name, env=env)
    built = Stack(
        name=name,
        token=token,
        controller=f"http://127.0.0.1:{ports['CONTROLLER_PORT']}/api/v1",
        gateway=f"http://127.0.0.1:{ports['GATEWAY_PORT']}",
        prometheus=f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}",
    )
    try:
        for service in (f"{name}_{short}" for short in LONG_RUNNING):
            wait_for(f"{service} running and healthy", partial(_service_ready, docker_client, service),
                     timeout_s=300, interval_s=1.0)  # fmt: skip
        wait_for(
            "the migration to complete", lambda: _migrated(docker_client, f"{name}_migrate"), timeout_s=120
        )
        print(f"stack {name} up and healthy in {time.monotonic() - started:.1f} s")
        yield built
    finally:
        started = time.monotonic()
        left = _tear_down(docker_client, name)
        print(f"stack {name} torn down in {time.monotonic() - started:.1f} s")
        assert left == {}, f"the stack left {left}"


def _load(stack: Stack, schedule: list[RateStep]) -> LoadSummary:
    return run_open_loop(
        f"{stack.gateway}/v2/models/digits_mlp/infer", digits_body(), schedule, connections=64, timeout_s=15.0
    ).summary()


def _decisions(stack: Stack, limit: int = 200) -> list[dict[str, Any]]:
    status, page = _http(f"{stack.controller}/deployments/digits/decisions?limit={limit}")
    assert status == 200, page
    return list(page["items"])


def _logs(service: str, since: str) -> str:
    result = subprocess.run(["docker", "service", "logs", "--raw", "--since", since, service],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    return result.stdout + result.stderr


def test_every_service_comes_up_healthy_and_prometheus_scrapes_them(stack: Stack) -> None:
    assert _http(f"{stack.controller}/health")[0] == 200
    assert _http(f"{stack.gateway}/v2/health/ready")[0] == 200

    def scraped() -> set[str] | None:
        status, body = _http(f"{stack.prometheus}/api/v1/targets")
        if status != 200:
            return None
        up = {t["labels"]["job"] for t in body["data"]["activeTargets"] if t["health"] == "up"}
        wanted = {"prometheus", "prewarm-controller", "prewarm-gateway", "prewarm-replicas"}
        return up if wanted <= up else None

    wait_for("Prometheus to scrape the controller, the gateway and the replica", scraped, timeout_s=90)


def test_a_replay_through_the_gateway_makes_the_controller_scale_the_replica_service(
    stack: Stack,
    docker_client: DockerClient,  # noqa: F811
) -> None:
    status, body = _http(
        f"{stack.controller}/deployments", method="POST", token=stack.token,
        body={
            "name": "digits", "model": "digits_mlp", "backend": "swarm",
            "backend_config": {"service": stack.service("replica")},
            "min_replicas": 1, "max_replicas": MAX_REPLICAS,
            "policy": {"decision_interval_s": 1, "replica_capacity_rps": CAPACITY_RPS},
        },
    )  # fmt: skip
    assert status == 201, body
    # Day 10 of the NASA trace in 48 s (x1800): the night, the morning ramp to ~40 rps, the evening.
    plan = plan_days(load_trace(ROOT / "data/traces/nasa_http_jul1995_1min.csv"), live_day=10, history_days=0,
                     compression=1800, peak_rps=60)  # fmt: skip
    rates = per_second(plan.live_rates_rps(), plan.interval_replay_s)
    summary = _load(stack, [RateStep(1.0, float(rate)) for rate in rates])
    print(f"replay: {summary.row()}")
    assert summary.sent > 1000
    assert summary.errors <= 0.01 * summary.sent, summary.row()  # scaling under load loses (almost) nothing

    scaled = [d for d in _decisions(stack) if d["applied"] and d["desired"] > d["current"]]
    assert scaled, "the controller never scaled up"
    assert _replica_count(docker_client, stack) >= 2
    # The new tasks became ready (running and healthy), and Prometheus finds them as the gateway does (by DNS).
    wait_for("the scaled replica service to run every task",
             lambda: _service_ready(docker_client, stack.service("replica")), timeout_s=120)  # fmt: skip

    def replicas_scraped() -> int | None:
        status, body = _http(f"{stack.prometheus}/api/v1/targets")
        up = [t for t in body["data"]["activeTargets"] if t["labels"]["job"] == "prewarm-replicas"
              and t["health"] == "up"] if status == 200 else []  # fmt: skip
        return len(up) if len(up) == _replica_count(docker_client, stack) else None

    wait_for("Prometheus to scrape every replica", replicas_scraped, timeout_s=90, interval_s=2.0)

    def lead_time_measured() -> str | None:  # the startups Swarm's tasks took, recorded as replica events
        status, body = _http(f"{stack.controller}/deployments/digits/status")
        reasons = (body.get("last_decision") or {}).get("reasons", []) if status == 200 else []
        return next((r for r in reasons if r.startswith("lead-time: measured startup")), None)

    print(wait_for("a decision whose lead time is the measured startup", lead_time_measured, timeout_s=90))


def _containers_of(docker_client: DockerClient, service: str) -> list[Any]:  # noqa: F811
    return docker_client.containers.list(
        filters={"label": f"com.docker.swarm.service.name={service}"}, ignore_removed=True
    )


def test_a_killed_replica_is_replaced_and_its_requests_are_retried(
    stack: Stack,
    docker_client: DockerClient,  # noqa: F811
) -> None:
    before = _replica_count(docker_client, stack)
    victim = _containers_of(docker_client, stack.service("replica"))[0]
    killed_task = victim.labels["com.docker.swarm.task.id"]
    [victim_ip] = [n["IPAddress"] for n in victim.attrs["NetworkSettings"]["Networks"].values()]
    killer = threading.Timer(5.0, victim.kill)
    killer.start()
    # A rate the replicas carry (80 % of the target); at 10 rps or more per replica the killed one is sent several
    # requests before the gateway's probe ejects it.
    rate = min(40.0, 0.8 * before * CAPACITY_RPS * TARGET_UTILISATION)
    summary = _load(stack, [RateStep(25.0, rate)])
    killer.join()
    print(f"replica killed under load: {summary.row()}")
    # Requests sent to the killed replica were retried on another one (nginx's proxy_next_upstream) ...
    [gateway] = _containers_of(docker_client, stack.service("gateway"))
    nginx_errors = gateway.exec_run(
        ["cat", "/var/lib/prewarm/replicas/digits/nginx/error.log"]
    ).output.decode()
    failed_there = [line for line in nginx_errors.splitlines() if f"{victim_ip}:9000" in line]
    assert failed_there, f"no request reached the killed replica {victim_ip}: {nginx_errors[-2000:]}"
    print(f"{len(failed_there)} nginx errors for the killed replica, e.g. {failed_there[0][:200]}")
    # ... so (almost) none failed, and Swarm replaced the task while the controller kept its count.
    assert summary.errors <= 0.01 * summary.sent, summary.row()
    wait_for("Swarm to replace the killed task", lambda: _service_ready(docker_client, stack.service("replica")),
             timeout_s=120)  # fmt: skip
    tasks = docker_client.services.get(stack.service("replica")).tasks()
    states = {t["ID"][:12]: (t["DesiredState"], t["Status"]["State"], t["Status"].get("Err")) for t in tasks}
    assert states.get(killed_task[:12], ("", ""))[1] == "failed", states
    # The controller kept the killed replica's place: Swarm replaced it, the count never went below what it was. It
    # may have grown: with one replica gone the others carry its load for a few seconds, and on a busy 2-core
    # machine the replacement's start slows them too; a decision that grew the count then says which threshold.
    after = _replica_count(docker_client, stack)
    grown = [(d["ts"], d["current"], d["desired"], d["reasons"]) for d in _decisions(stack, 10)
             if d["desired"] > d["current"] and d["desired"] > before]  # fmt: skip
    print(f"replica count {before} -> {after}; decisions that grew it: {grown}")
    assert after >= before, grown
    assert (after > before) == bool(grown), grown
    assert all(any(r.startswith(("reactive:", "panic:")) for r in reasons) for *_, reasons in grown), grown


def test_postgres_replaced_the_controller_holds_its_counts_and_resumes(
    stack: Stack,
    docker_client: DockerClient,  # noqa: F811
) -> None:
    before = _replica_count(docker_client, stack)
    [postgres] = _containers_of(docker_client, stack.service("postgres"))
    old_task = postgres.labels["com.docker.swarm.task.id"]
    stopped_at = time.time()
    results: list[LoadSummary] = []
    load = threading.Thread(target=lambda: results.append(_load(stack, [RateStep(20.0, 10.0)])))
    load.start()  # inference does not need the database: it goes on through the outage
    postgres.stop(timeout=10)  # the task ends; Swarm starts a new one on the same volume
    seen: list[int] = []

    def back() -> bool:  # a new task (not the stopped one) running and healthy
        seen.append(_replica_count(docker_client, stack))
        running = docker_client.services.get(stack.service("postgres")).tasks(
            filters={"desired-state": "running"}
        )
        return any(t["ID"] != old_task and t["Status"]["State"] == "running" for t in running)

    wait_for("a new Postgres task, healthy", back, timeout_s=180, interval_s=1.0)
    back_at = time.time()
    load.join()
    assert set(seen) == {before}, seen  # the replica count held while the store was away
    [summary] = results
    print(f"Postgres replaced after {back_at - stopped_at:.1f} s; load meanwhile: {summary.row()}")
    assert summary.errors <= 0.01 * summary.sent, summary.row()

    answers: list[tuple[int, Any]] = []

    def decided_after_outage() -> float | None:
        status, body = _http(f"{stack.controller}/deployments/digits/status")
        answers.append((status, body if status != 200 else {k: body.get(k) for k in ("decided_at", "error", "owner")}))
        decided = _epoch(body["decided_at"]) if status == 200 and body.get("decided_at") else 0.0
        return decided if decided > back_at else None

    try:
        wait_for("a decision made after the outage", decided_after_outage, timeout_s=120, interval_s=2.0)
    except BaseException:  # say what the API answered and what the controller logged
        since = f"{int(time.time() - stopped_at) + 30}s"
        print(f"back at {back_at:.1f}; status answers: {answers[:2]} ... {answers[-2:]}")
        print(_logs(stack.service("controller"), since)[-6000:])
        raise
    log = _logs(stack.service("controller"), f"{int(time.time() - stopped_at) + 30}s")
    assert "database reachable again" in log, log[-3000:]  # it saw the outage, held, and resumed
    assert _replica_count(docker_client, stack) == before  # nothing was lost: the deployment and its count


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
