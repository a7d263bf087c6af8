"""The dry-run backend records scale requests and never acts."""

from __future__ import annotations

import logging

import pytest

from controller.backends.base import ReplicaBackend, ReplicaInfo, ReplicaState
from controller.backends.dry_run import DryRunBackend, ScaleRequest


class RecordingBackend:
    """A real-looking backend that fails the test if anything tries to scale it."""

    name = "recording"

    def __init__(self) -> None:
        self.closed = False
        self.scaled: list[int] = []

    def replicas(self) -> list[ReplicaInfo]:
        return [ReplicaInfo("a", ReplicaState.READY), ReplicaInfo("b", ReplicaState.STARTING)]

    def ready_count(self) -> int:
        return 1

    def scale_to(self, replicas: int) -> None:
        self.scaled.append(replicas)

    def close(self) -> None:
        self.closed = True


def test_dry_run_satisfies_the_replica_backend_protocol() -> None:
    assert isinstance(DryRunBackend(), ReplicaBackend)


def test_scale_request_is_recorded_with_time_and_previous_count() -> None:
    backend = DryRunBackend(initial_replicas=2, clock=lambda: 1000.0)
    backend.scale_to(5)
    assert list(backend.requests) == [ScaleRequest(ts=1000.0, replicas=5, previous=2)]
    assert backend.last_requested == 5


def test_standalone_dry_run_pretends_the_requested_replicas_are_ready() -> None:
    backend = DryRunBackend(initial_replicas=2)
    backend.scale_to(4)
    assert backend.ready_count() == 4
    assert [r.state for r in backend.replicas()] == [ReplicaState.READY] * 4


def test_wrapping_dry_run_reports_the_observed_backend_and_never_scales_it() -> None:
    observed = RecordingBackend()
    backend = DryRunBackend(observe=observed)
    backend.scale_to(9)
    assert observed.scaled == []
    assert backend.ready_count() == 1
    assert [r.replica_id for r in backend.replicas()] == ["a", "b"]
    assert backend.requests[-1].previous == 1


def test_scale_request_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="controller.backends.dry_run"):
        DryRunBackend(initial_replicas=1).scale_to(3)
    assert "would scale from 1 to 3" in caplog.text


def test_history_is_bounded() -> None:
    backend = DryRunBackend(history=3)
    for n in range(10):
        backend.scale_to(n)
    assert [r.replicas for r in backend.requests] == [7, 8, 9]


def test_no_request_yet_means_no_last_requested() -> None:
    assert DryRunBackend().last_requested is None


def test_negative_count_is_refused() -> None:
    backend = DryRunBackend()
    with pytest.raises(ValueError):
        backend.scale_to(-1)
    assert not backend.requests


def test_close_closes_the_observed_backend() -> None:
    observed = RecordingBackend()
    DryRunBackend(observe=observed).close()
    assert observed.closed
