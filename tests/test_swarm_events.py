"""The Swarm backend's replica events from successive task listings (no engine needed: listings are given)."""

from __future__ import annotations

from controller.backends.local_events import Event
from controller.backends.swarm import SwarmBackend, SwarmTarget, Task


class Recorded:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, event: Event) -> None:
        self.events.append(event)


def _task(task_id: str, state: str, desired: str = "running") -> Task:
    return Task(task_id, 1, state, desired, 100.0, 103.0, "", "10.0.0.2")


def _events(sink: Recorded) -> list[tuple[str, str]]:
    return [(e.replica_id, e.event) for e in sink.events]


def test_a_task_removed_between_two_listings_is_recorded_as_stopped_once() -> None:
    sink = Recorded()
    backend = SwarmBackend(SwarmTarget("svc"), events=sink)
    backend._record_events([])  # the first listing: nothing there yet
    backend._record_events([_task("a" * 25, "running"), _task("b" * 25, "starting")])
    backend._record_events([_task("a" * 25, "running")])  # b was removed before it was seen stopping
    backend._record_events([_task("a" * 25, "shutdown", desired="shutdown")])  # a was seen stopping
    backend._record_events([])
    assert _events(sink) == [
        ("a" * 12, "started"), ("a" * 12, "ready"), ("b" * 12, "started"),
        ("b" * 12, "stopped"), ("a" * 12, "stopped"),
    ]  # fmt: skip


def test_history_seen_at_the_first_listing_is_not_recorded_when_it_goes() -> None:
    sink = Recorded()
    backend = SwarmBackend(SwarmTarget("svc"), events=sink)
    backend._record_events([_task("c" * 25, "shutdown", desired="shutdown")])
    backend._record_events([])
    assert sink.events == []
