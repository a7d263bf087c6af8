"""The local backend's warm pool: parked replicas (started, warmed, not serving) join a scale-up at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.backends.local import LocalProcessBackend
from controller.backends.local_events import JOINED
from inference.gateway.registry import read_registry
from tests.gateway_support import wait_for
from tests.test_local_backend_lifecycle import RecordingSink, make_config

pytestmark = pytest.mark.timeout(60)


def states(backend: LocalProcessBackend) -> dict[str, str]:
    snapshot = read_registry(backend.config.state_dir / "replicas.json")
    assert snapshot is not None
    return {r.replica_id: r.state for r in snapshot.replicas}


def test_a_parked_replica_joins_at_once_and_the_pool_refills(tmp_path: Path) -> None:
    sink = RecordingSink()
    backend = LocalProcessBackend(make_config(tmp_path, warm_s=1.0), sink)  # a replica takes >= 1 s to be ready
    try:
        backend.set_warm_pool(1)
        wait_for(lambda: backend.parked_count() == 1, 15, what="a parked replica")
        parked_id = next(iter(states(backend)))
        assert states(backend) == {parked_id: "parked"} and backend.ready_count() == 0  # not serving, not counted
        started = time.monotonic()
        backend.scale_to(1)
        joined_after = time.monotonic() - started
        assert backend.ready_count() == 1 and states(backend)[parked_id] == "ready"  # published already
        assert joined_after < 0.1, joined_after
        assert JOINED in sink.kinds()
        wait_for(lambda: backend.parked_count() == 1, 15, what="the pool refilled in the background")
        assert backend.ready_count() == 1 and len(states(backend)) == 2
        backend.scale_to(0)
        wait_for(lambda: list(states(backend).values()) == ["parked"], 15, what="the serving replica stopped")
        backend.set_warm_pool(0)
        wait_for(lambda: not states(backend), 15, what="the pool emptied")
    finally:
        backend.close()
    assert not states(backend)


def test_a_restarted_backend_adopts_its_parked_replicas(tmp_path: Path) -> None:
    first = LocalProcessBackend(make_config(tmp_path, warm_s=0.2, warm_pool_size=1), RecordingSink())
    wait_for(lambda: first.parked_count() == 1, 15, what="a parked replica")
    before = states(first)
    first.close(stop_replicas=False)
    second = LocalProcessBackend(make_config(tmp_path, warm_s=0.2, warm_pool_size=1), RecordingSink())
    try:
        assert second.parked_count() == 1 and second.desired_count() == 0 and states(second) == before
    finally:
        second.close()
