"""The Swarm backend against the real Docker engine in Swarm mode: scaling, readiness, startup measured into replica
events, a killed task replaced under the live reconcile loop, errors that say what to do, and the daemon stopped and
started again.

The services here run the locally built Debian base (``prewarm-base``): a shell that becomes healthy 1.5 s after it
starts (its health check looks for a file it writes then), so readiness and startup are real and quick.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, select

from controller import repository
from controller.backends.base import BackendError, ReplicaState
from controller.backends.local_events import StoreEventSink
from controller.backends.swarm import SwarmApiError, SwarmBackend, SwarmTarget
from controller.loop import ReconcileLoop
from controller.policy import ScalingPolicy
from controller.sources.store import StoreSource
from prewarm import metric_names as m
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.models import ReplicaEvent, ScalingDecision
from prewarm.db.store import MetricsStore, Sample
from tests.containers_support import (
    ROOT,
    docker_client,  # noqa: F401 (fixture)
    stack_images,  # noqa: F401 (fixture)
    unique_name,
    wait_for,
)

if TYPE_CHECKING:
    from docker import DockerClient

pytestmark = [pytest.mark.containers, pytest.mark.slow]

READY_AFTER_S = 1.5  # the test services become healthy this long after their container starts
NS = 1_000_000_000


@pytest.fixture
def service_factory(
    docker_client: DockerClient,  # noqa: F811
    stack_images: dict[str, str],  # noqa: F811
) -> Iterator[Callable[..., str]]:
    """Creates Swarm services of the local base image; removes them, and waits for their containers to go."""
    from docker.types import EndpointSpec, Healthcheck, ServiceMode

    base = "prewarm-base:bookworm"
    created: list[str] = []

    def create(replicas: int = 1, healthy: bool = True, mode: str = "replicated") -> str:
        name = unique_name("svc")
        check = ["CMD", "test", "-f", "/tmp/ready"] if healthy else ["CMD", "false"]
        docker_client.services.create(
            base,
            ["sh", "-c", f"sleep {READY_AFTER_S} && touch /tmp/ready && exec sleep infinity"],
            name=name,
            mode=ServiceMode(mode, replicas=replicas if mode == "replicated" else None),
            healthcheck=Healthcheck(
                test=check, interval=NS // 2, timeout=2 * NS, retries=3, start_period=60 * NS
            ),
            stop_grace_period=NS,  # sleep ignores SIGTERM: SIGKILL after a second
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            labels={"org.prewarm.test": "swarm-backend"},
        )
        created.append(name)
        return name

    yield create
    for name in created:
        try:
            docker_client.services.get(name).remove()
        except Exception as error:  # already gone (a test removed it): nothing to clean
            logging.getLogger(__name__).info("service %s: %s", name, error)
    wait_for(
        "the test services' containers to be removed",
        lambda: not any(
            (c.name or "").startswith(tuple(created)) for c in docker_client.containers.list(all=True, ignore_removed=True)
        ),
        timeout_s=120,
    )


@pytest.fixture
def store(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine_for_url(postgres_url)
    yield engine
    engine.dispose()


def _deployment(engine: Engine, service: str, **policy: Any) -> int:
    with session_factory(engine)() as session:
        deployment = repository.create_deployment(
            session, name="digits", model="digits_mlp", backend="swarm", backend_config={"service": service},
            min_replicas=1, max_replicas=6, price_per_replica_hour=0.1,
            policy=ScalingPolicy(**policy) if policy else None, author="test",
        )  # fmt: skip
        session.commit()
        return deployment.id


def _events(engine: Engine) -> list[ReplicaEvent]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(ReplicaEvent).order_by(ReplicaEvent.id)))


def _containers(docker_client: DockerClient, service: str) -> list[Any]:  # noqa: F811
    return docker_client.containers.list(
        filters={"label": f"com.docker.swarm.service.name={service}"}, ignore_removed=True
    )


def test_scales_up_and_down_counting_running_healthy_tasks_and_measuring_their_startup(
    service_factory: Callable[..., str], store: Engine
) -> None:
    service = service_factory(replicas=1)
    deployment_id = _deployment(store, service)
    backend = SwarmBackend(SwarmTarget(service), events=StoreEventSink(store, "digits"))
    try:
        wait_for("the first task to be ready", lambda: backend.ready_count() == 1, timeout_s=90)
        assert backend.desired_count() == 1
        [first] = [r.replica_id for r in backend.replicas()]

        backend.scale_to(3)
        assert backend.desired_count() == 3  # the spec changes at once; the tasks follow
        starting = [r for r in backend.replicas() if r.state is ReplicaState.STARTING]
        assert len(starting) <= 2
        wait_for("three ready tasks", lambda: backend.ready_count() == 3, timeout_s=90)
        replicas = backend.replicas()
        assert [r.state for r in replicas] == [ReplicaState.READY] * 3
        for _ in range(5):  # asked again and again, each task's startup is recorded once
            backend.replicas()

        events = _events(store)
        ready = [e for e in events if e.event == "ready"]
        # The first task was measured if the backend saw it start, else adopted; the two new ones were measured.
        assert [e.event for e in events if e.replica == first] in (["ready"], ["adopted"]), events
        assert len([e for e in ready if e.replica != first]) == 2, [(e.replica, e.event) for e in events]
        assert len({e.replica for e in ready}) == len(ready)  # each task's startup recorded once
        for event in ready:  # created -> running and healthy: at least the time it takes to become healthy
            assert event.duration_s is not None and READY_AFTER_S <= event.duration_s < 60
        with session_factory(store)() as session:
            startup_s = repository.replica_startup_s(session, deployment_id)
        assert startup_s is not None and startup_s >= READY_AFTER_S

        backend.scale_to(1)
        assert backend.desired_count() == 1
        wait_for(
            "the scale-down to one running task",
            lambda: [r.state for r in backend.replicas()] == [ReplicaState.READY],
            timeout_s=90,
        )
        stopped = wait_for(
            "two stopped events",
            lambda: [e for e in _events(store) if e.event == "stopped"] if len(
                [e for e in _events(store) if e.event == "stopped"]) == 2 else None,
            timeout_s=30,
        )  # fmt: skip
        assert len({e.replica for e in stopped}) == 2
        assert Counter(e.event for e in _events(store))["ready"] == len(ready)  # no task measured twice
    finally:
        backend.close()


def test_a_running_task_that_is_not_healthy_is_not_ready(
    service_factory: Callable[..., str], docker_client: DockerClient  # noqa: F811
) -> None:
    service = service_factory(replicas=1, healthy=False)
    backend = SwarmBackend(SwarmTarget(service))
    try:
        container = wait_for("the task's container", lambda: next(iter(_containers(docker_client, service)), None),
                             timeout_s=60)  # fmt: skip
        time.sleep(3 * READY_AFTER_S)  # long enough for a health check to have passed, had it been healthy
        container.reload()
        assert container.status == "running"
        assert container.attrs["State"]["Health"]["Status"] != "healthy"
        assert backend.ready_count() == 0
        assert [r.state for r in backend.replicas()] == [ReplicaState.STARTING]
        assert backend.desired_count() == 1
    finally:
        backend.close()


def _feed_steady_load(engine: Engine, rps: float, seconds: int) -> None:
    """Per-second request rate around now (past and the test's next minutes), as the gateway would write it."""
    now = int(time.time())
    samples = [Sample("digits", m.REQUESTS_RPS, float(t), rps) for t in range(now - 120, now + seconds)]
    MetricsStore(engine).insert_samples(samples, now=float(now + seconds))


def test_a_killed_task_is_replaced_by_swarm_and_the_loop_holds_its_decision(
    service_factory: Callable[..., str], docker_client: DockerClient, store: Engine  # noqa: F811
) -> None:
    service = service_factory(replicas=3)
    # 30 rps at 20 rps per replica and 70 % target utilisation needs 3 replicas, with 3 ready or 2.
    _deployment(store, service, decision_interval_s=1.0, replica_capacity_rps=20.0, target_utilisation=0.7)
    _feed_steady_load(store, 30.0, seconds=240)
    loop = ReconcileLoop(store, StoreSource(MetricsStore(store)), state_root=Path("/tmp"))
    try:
        wait_for("three ready tasks", lambda: loop.reconcile_once(time.time()) is not None and loop.runtimes[
            "digits"].ready == 3, timeout_s=90, interval_s=1.0)  # fmt: skip
        before = {c.labels["com.docker.swarm.task.id"][:12] for c in _containers(docker_client, service)}
        victim = _containers(docker_client, service)[0]
        victim_task = victim.labels["com.docker.swarm.task.id"][:12]
        victim.kill()
        killed_at = time.monotonic()
        seen_ready: list[int] = []
        while time.monotonic() - killed_at < 60:
            loop.reconcile_once(time.time())
            seen_ready.append(loop.runtimes["digits"].ready)
            if len(seen_ready) > 3 and min(seen_ready) < 3 and seen_ready[-1] == 3:
                break
            time.sleep(1.0)
        assert min(seen_ready) == 2 and seen_ready[-1] == 3, seen_ready  # Swarm replaced it
        assert loop.runtimes["digits"].errors_total == 0
        with session_factory(store)() as session:
            decisions = list(session.scalars(select(ScalingDecision).order_by(ScalingDecision.ts)))
        assert decisions and {d.desired for d in decisions} == {3}  # the kill changed no decision
        assert not any(d.applied for d in decisions)  # and none was acted on: Swarm did the replacing
        events = _events(store)
        assert any(e.replica == victim_task and e.event == "failed" for e in events), [
            (e.replica, e.event, e.detail) for e in events
        ]
        replacement = [e for e in events if e.event == "ready" and e.replica not in before]
        assert len(replacement) == 1, [(e.replica, e.event, e.detail) for e in events]
        assert replacement[0].duration_s is not None and replacement[0].duration_s >= READY_AFTER_S
    finally:
        loop.close()


def test_errors_say_what_went_wrong_and_are_logged(
    service_factory: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    gone = SwarmBackend(SwarmTarget(unique_name("missing")))
    with caplog.at_level(logging.ERROR, logger="controller.backends.swarm"), pytest.raises(BackendError) as error:
        gone.ready_count()
    assert "not found" in str(error.value) and "backend_config" in str(error.value)
    assert str(error.value) in caplog.text
    with pytest.raises(BackendError, match="not found"):
        gone.scale_to(2)

    unreachable = SwarmBackend(SwarmTarget("anything", docker_url="unix:///nonexistent/docker.sock"))
    with pytest.raises(BackendError, match=r"unreachable.*is dockerd running"):
        unreachable.desired_count()

    global_service = service_factory(mode="global")
    with pytest.raises(BackendError, match="global mode; only a replicated service can be scaled"):
        SwarmBackend(SwarmTarget(global_service)).scale_to(2)

    with pytest.raises(BackendError, match="unknown Swarm backend_config keys"):
        from controller.backends.factory import build_backend

        build_backend(name="x", model="m", backend="swarm", backend_config={"servce": "typo"}, min_replicas=1,
                      engine=None, state_root=Path("/tmp"))  # fmt: skip


def test_a_write_from_a_stale_read_is_refused_as_out_of_sequence(service_factory: Callable[..., str]) -> None:
    """What scale_to retries on: the engine refuses a spec written from an older version of the service."""
    service = service_factory(replicas=1)
    backend = SwarmBackend(SwarmTarget(service))
    try:
        stale = backend._inspect()
        backend.scale_to(2)  # someone else's change in between
        with pytest.raises(SwarmApiError, match="out of sequence"):
            backend._write_replicas(stale, 3)
        backend.scale_to(3)  # a fresh read: accepted
        assert backend.desired_count() == 3
    finally:
        backend.close()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_permission_denied_on_the_socket_says_which_group_to_join(tmp_path: Path) -> None:
    """A socket the controller may not open (mode 0, owned by nobody; the backend runs as root without the
    capability that overrides file permissions, so the kernel refuses as it would refuse a user not in the group)."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    os.chown(path, 65534, 65534)
    path.chmod(0)
    tmp_path.chmod(0o755)
    code = (
        "from controller.backends.swarm import SwarmBackend, SwarmTarget\n"
        "from controller.backends.base import BackendError\n"
        f"try:\n    SwarmBackend(SwarmTarget('anything', docker_url='unix://{path}')).ready_count()\n"
        "except BackendError as error:\n    print(error)\n"
    )
    try:
        result = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", code],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        server.close()
    assert f"permission denied on the Docker socket {path}" in result.stdout, result.stdout + result.stderr[-2000:]
    assert f"stat -c %g {path}" in result.stdout


def _stop_dockerd() -> None:
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "stop", "docker.socket", "docker"], check=True, timeout=120)
        return
    pid = int(Path("/var/run/docker.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for("dockerd to exit", lambda: not Path(f"/proc/{pid}").exists(), timeout_s=120)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to stop and start dockerd")
def test_the_daemon_stopped_then_started_again_is_an_error_then_recovers(
    service_factory: Callable[..., str], store: Engine
) -> None:
    service = service_factory(replicas=1)
    _deployment(store, service, decision_interval_s=1.0)
    loop = ReconcileLoop(store, StoreSource(MetricsStore(store)), state_root=Path("/tmp"))
    backend = SwarmBackend(SwarmTarget(service))
    try:
        wait_for("one ready task", lambda: backend.ready_count() == 1, timeout_s=90)
        loop.reconcile_once(time.time())
        assert loop.runtimes["digits"].errors_total == 0

        _stop_dockerd()
        try:
            with pytest.raises(BackendError, match="unreachable"):
                backend.ready_count()
            time.sleep(1.0)
            loop.reconcile_once(time.time())  # the loop counts the error and decides nothing
            runtime = loop.runtimes["digits"]
            assert runtime.errors_total >= 1 and runtime.error_stage == "backend"
        finally:
            started = subprocess.run(
                [str(ROOT / "scripts" / "ensure-docker.sh")], capture_output=True, text=True, timeout=300,
                check=False,
            )  # fmt: skip
            assert started.returncode == 0, started.stderr
        # Without live-restore (Swarm has none) the task died with the daemon; Swarm starts a new one.
        wait_for("the service to run a ready task again", lambda: _ready_or_none(backend) == 1, timeout_s=180)
        assert backend.desired_count() == 1
        time.sleep(1.0)
        errors_before = loop.runtimes["digits"].errors_total
        loop.reconcile_once(time.time())
        assert loop.runtimes["digits"].errors_total == errors_before  # the loop is back to normal
    finally:
        backend.close()
        loop.close()


def _ready_or_none(backend: SwarmBackend) -> int | None:
    try:
        return backend.ready_count()
    except BackendError:
        return None
