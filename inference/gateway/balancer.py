"""Least-outstanding-requests balancing with a bounded wait queue when every replica is at its limit."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection

from inference.gateway.upstream import Upstream


class NoReplicaReady(Exception):
    """No replica can take traffic (none ready, or all ejected)."""


class QueueFull(Exception):
    """Every replica is at its in-flight limit and the wait queue is full."""


class QueueTimeout(Exception):
    """The request waited in the queue longer than allowed."""


class Balancer:
    """Picks the routable replica with the fewest requests in flight; requests wait (bounded) when all are busy."""

    def __init__(self, max_in_flight_per_replica: int, queue_capacity: int, queue_timeout_s: float) -> None:
        self.upstreams: dict[str, Upstream] = {}
        self.max_in_flight_per_replica = max_in_flight_per_replica
        self.queue_capacity = queue_capacity
        self.queue_timeout_s = queue_timeout_s
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._rotation = 0

    @property
    def _candidates(self) -> list[Upstream]:
        return list(self.upstreams.values())

    @property
    def queue_length(self) -> int:
        return len(self._waiters)

    @property
    def in_flight(self) -> int:
        return sum(upstream.in_flight for upstream in self.upstreams.values())

    def routable(self) -> list[Upstream]:
        return [upstream for upstream in self.upstreams.values() if upstream.routable]

    def pick(self, exclude: Collection[str] = (), need_grpc: bool = False) -> Upstream | None:
        """The least loaded routable replica under its limit, avoiding ``exclude`` if any other is available."""
        best: Upstream | None = None
        fallback: Upstream | None = None
        limit = self.max_in_flight_per_replica
        # Rotate the starting point so that ties do not always go to the same replica.
        candidates = self._candidates
        count = len(candidates)
        self._rotation = (self._rotation + 1) % max(count, 1)
        for index in range(count):
            upstream = candidates[(index + self._rotation) % count]
            if upstream.in_flight >= limit or not upstream.routable or (need_grpc and upstream.grpc_port is None):
                continue
            if exclude and upstream.replica_id in exclude:
                if fallback is None or upstream.in_flight < fallback.in_flight:
                    fallback = upstream
            elif best is None or upstream.in_flight < best.in_flight:
                best = upstream
        return best or fallback

    async def acquire(self, exclude: Collection[str] = (), need_grpc: bool = False) -> Upstream:
        """Reserve a slot on a replica (one with a gRPC port if ``need_grpc``), waiting in the queue if all are busy;
        raises NoReplicaReady/QueueFull/QueueTimeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.queue_timeout_s
        while True:
            if not self._waiters:  # FIFO: newcomers do not overtake queued requests
                upstream = self.pick(exclude, need_grpc)
                if upstream is not None:
                    upstream.in_flight += 1
                    return upstream
            if not any(u.routable and (u.grpc_port or not need_grpc) for u in self.upstreams.values()):
                raise NoReplicaReady("no replica is ready" + (" to serve gRPC" if need_grpc else ""))
            if len(self._waiters) >= self.queue_capacity:
                raise QueueFull(f"all replicas busy and {self.queue_capacity} requests already queued")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise QueueTimeout(f"waited {self.queue_timeout_s:g} s for a replica") from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            upstream = self.pick(exclude, need_grpc)
            if upstream is not None:
                upstream.in_flight += 1
                self.wake()  # capacity may remain for the next waiter too
                return upstream

    def release(self, upstream: Upstream) -> None:
        upstream.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        """Let the first queued request try again (capacity freed or the replica set changed)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        """Wake every waiter, e.g. when no replica is left so that they fail fast."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
