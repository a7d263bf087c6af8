"""The local process backend with real processes (fake V2 replicas): readiness, replacement, stop, adoption."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from controller.backends.base import ReplicaBackend, ReplicaState
from controller.backends.local import LocalBackendConfig, LocalProcessBackend
from controller.backends.local_events import Event, StoreEventSink
from controller.backends.local_process import OWNER_ENV, find_owned_processes, spawn
from inference.gateway.registry import read_registry, write_gateway_load
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.models import ReplicaEvent
from tests.gateway_support import fake_replica_command, wait_for
from tests.helpers import add_deployment

pytestmark = pytest.mark.timeout(60)


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.event for e in self.events]


def make_config(tmp_path: Path, warm_s: float = 0.2, **overrides: object) -> LocalBackendConfig:
    options: dict[str, object] = {"drain_s": 0.2, "stop_timeout_s": 3.0, "liveness_interval_s": 0.2}
    options.update(overrides)
    return LocalBackendConfig(
        deployment="digits", model="fake", state_dir=tmp_path / "digits",
        command=fake_replica_command(warm_s=warm_s), **options,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def backend(tmp_path: Path, sink: RecordingSink) -> Iterator[LocalProcessBackend]:
    backend = LocalProcessBackend(make_config(tmp_path), sink)
    yield backend
    backend.close()


def pids(backend: LocalProcessBackend) -> set[int]:
    snapshot = read_registry(backend.config.state_dir / "replicas.json")
    assert snapshot is not None
    return {r.pid for r in snapshot.replicas if r.pid is not None}


def test_implements_the_replica_backend_protocol(backend: LocalProcessBackend) -> None:
    assert isinstance(backend, ReplicaBackend)


def test_replica_counts_only_once_its_readiness_probe_passes(tmp_path: Path, sink: RecordingSink) -> None:
    backend = LocalProcessBackend(make_config(tmp_path, warm_s=1.5), sink)
    try:
        backend.scale_to(1)
        time.sleep(0.5)
        assert backend.ready_count() == 0
        assert [r.state for r in backend.replicas()] == [ReplicaState.STARTING]
        wait_for(lambda: backend.ready_count() == 1, 10, what="ready")
        ready = [e for e in sink.events if e.event == "ready"]
        assert len(ready) == 1 and ready[0].duration_s is not None and ready[0].duration_s >= 1.5
    finally:
        backend.close()


def test_scale_up_publishes_ready_replicas_on_distinct_ports(backend: LocalProcessBackend) -> None:
    backend.scale_to(3)
    wait_for(lambda: backend.ready_count() == 3, 15, what="3 ready")
    snapshot = read_registry(backend.config.state_dir / "replicas.json")
    assert snapshot is not None
    assert [r.state for r in snapshot.replicas] == ["ready"] * 3
    assert len({r.port for r in snapshot.replicas}) == 3


def test_a_killed_replica_is_replaced_and_the_failure_recorded(
    backend: LocalProcessBackend, sink: RecordingSink
) -> None:
    backend.scale_to(2)
    wait_for(lambda: backend.ready_count() == 2, 15, what="2 ready")
    victim = next(iter(pids(backend)))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "failed" in sink.kinds(), 5, what="failed event")
    wait_for(lambda: backend.ready_count() == 2 and victim not in pids(backend), 10, what="replacement ready")
    failed = [e for e in sink.events if e.event == "failed"]
    assert "exit code -9" in failed[0].detail


def test_a_hung_replica_is_replaced(backend: LocalProcessBackend, sink: RecordingSink) -> None:
    backend.scale_to(1)
    wait_for(lambda: backend.ready_count() == 1, 15, what="ready")
    victim = next(iter(pids(backend)))
    os.kill(victim, signal.SIGSTOP)  # keeps its port, answers nothing
    try:
        wait_for(
            lambda: victim not in pids(backend) and backend.ready_count() == 1, 15, what="hung one replaced"
        )
        assert any(e.event == "failed" and "stopped answering" in e.detail for e in sink.events)
        assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    finally:
        if psutil.pid_exists(victim):
            os.kill(victim, signal.SIGKILL)


def test_scale_down_stops_the_replica_with_least_in_flight_work_gracefully(
    backend: LocalProcessBackend, sink: RecordingSink
) -> None:
    backend.scale_to(3)
    wait_for(lambda: backend.ready_count() == 3, 15, what="3 ready")
    ids = [r.replica_id for r in backend.replicas()]
    idle = ids[1]
    write_gateway_load(backend.config.state_dir / "gateway.json", {ids[0]: 5, idle: 0, ids[2]: 3})
    backend.scale_to(2)
    assert {r.replica_id for r in backend.replicas() if r.state is ReplicaState.STOPPING} == {idle}
    wait_for(lambda: len(backend.replicas()) == 2, 10, what="stopped")
    stopped = [e for e in sink.events if e.event == "stopped"]
    assert [e.replica_id for e in stopped] == [idle]
    assert stopped[0].detail == "exit code 0"  # SIGTERM handled: a graceful exit, not a kill


def test_a_restarted_backend_adopts_its_running_replicas(tmp_path: Path, sink: RecordingSink) -> None:
    first = LocalProcessBackend(make_config(tmp_path), sink)
    first.scale_to(2)
    wait_for(lambda: first.ready_count() == 2, 15, what="2 ready")
    before = pids(first)
    first.close(stop_replicas=False)  # as if the backend process died
    second = LocalProcessBackend(make_config(tmp_path), sink)
    try:
        assert second.ready_count() == 2
        assert pids(second) == before
        assert {p.pid for p in find_owned_processes(second._owner)} == before
    finally:
        second.close()
    assert find_owned_processes(second._owner) == []


def test_a_restarted_backend_kills_orphans_it_cannot_adopt(tmp_path: Path, sink: RecordingSink) -> None:
    config = make_config(tmp_path)
    owner = str(config.state_dir.resolve())
    orphan = spawn(
        config.replica_command(0), owner, tmp_path / "orphan.log"
    )  # unregistered, as after a crash
    try:
        wait_for(lambda: OWNER_ENV in psutil.Process(orphan.pid).environ(), 5, what="orphan env")
        backend = LocalProcessBackend(config, sink)
        try:
            orphan.wait(timeout=5)
            assert orphan.returncode == -signal.SIGKILL
            assert backend.replicas() == []
        finally:
            backend.close()
    finally:
        orphan.kill()
        orphan.wait()


def test_close_leaves_no_replica_processes(tmp_path: Path, sink: RecordingSink) -> None:
    backend = LocalProcessBackend(make_config(tmp_path), sink)
    backend.scale_to(2)
    wait_for(lambda: backend.ready_count() == 2, 15, what="2 ready")
    started = pids(backend)
    backend.close()
    assert all(not psutil.pid_exists(pid) for pid in started)


@pytest.mark.slow
def test_replica_events_are_written_to_the_store(tmp_path: Path, database_url: str) -> None:
    engine = create_engine_for_url(database_url)
    add_deployment(engine, "digits")
    backend = LocalProcessBackend(make_config(tmp_path), StoreEventSink(engine, "digits"))
    try:
        backend.scale_to(1)
        wait_for(lambda: backend.ready_count() == 1, 15, what="ready")
        victim = next(iter(pids(backend)))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: backend.ready_count() == 1 and victim not in pids(backend), 10, what="replaced")
    finally:
        backend.close()
    with session_factory(engine)() as session:
        events = session.scalars(select(ReplicaEvent).order_by(ReplicaEvent.id)).all()
    kinds = [e.event for e in events]
    assert kinds[:4] == ["started", "ready", "failed", "started"]
    assert events[1].duration_s is not None and events[1].duration_s > 0
    assert kinds.count("stopped") == 1
    engine.dispose()
