"""The replica backend protocol: local processes, Kubernetes and dry-run all offer exactly this."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class ReplicaState(StrEnum):
    """Where a replica is in its life; only READY replicas receive traffic and count as capacity."""

    STARTING = "starting"  # process/pod exists, pre-warming, readiness probe not passed yet
    READY = "ready"
    PARKED = "parked"  # warm pool: started, loaded and warmed, but not serving until it joins (local backend)
    STOPPING = "stopping"  # draining in-flight work before exit
    FAILED = "failed"  # died or stopped answering; the backend replaces it


@dataclass(frozen=True)
class ReplicaInfo:
    """One replica as the backend sees it."""

    replica_id: str
    state: ReplicaState
    address: str | None = None  # e.g. "127.0.0.1:8101" for a local replica; None where not known
    in_flight: int | None = None
    started_at: float | None = None  # epoch seconds
    pool: str | None = None  # the capacity pool it runs in, on a pooled backend


class BackendError(RuntimeError):
    """The backend could not do what was asked (API refused, process could not start); the message says why."""


@runtime_checkable
class ReplicaBackend(Protocol):
    """What the controller needs from whatever runs the replicas. Calls are blocking; the loop runs them in a thread."""

    name: str

    def replicas(self) -> list[ReplicaInfo]:
        """Every replica the backend manages now, with its state."""
        ...

    def desired_count(self) -> int:
        """The count the backend was last asked for (its spec: Kubernetes' ``spec.replicas``), which the loop
        decides from. Pods of a rolling update's surge or replicas still stopping are not in it."""
        ...

    def ready_count(self) -> int:
        """Replicas that passed their readiness probe (pre-warmed) and take traffic."""
        ...

    def scale_to(self, replicas: int) -> None:
        """Ask for exactly ``replicas`` replicas; returns once the request is accepted, not when they are ready."""
        ...

    def close(self) -> None:
        """Release resources; a backend that owns processes stops them."""
        ...


@dataclass(frozen=True)
class PoolCounts:
    """One capacity pool's replicas as its backend sees them."""

    desired: int
    ready: int


@dataclass(frozen=True)
class DrainNotice:
    """A replica of a pool about to be taken back (its node is being drained or reclaimed)."""

    pool: str
    replica: str
    reason: str


@runtime_checkable
class PooledBackend(Protocol):
    """The extension for capacity pools (docs/cost.md): a backend that runs each pool's replicas on their own."""

    def scale_pools(self, counts: dict[str, int]) -> None:
        """Ask each named pool for exactly its count (pools not named keep theirs)."""
        ...

    def pool_counts(self) -> dict[str, PoolCounts]:
        """Each pool's desired and ready replicas now."""
        ...


def scale_placement(backend: ReplicaBackend, counts: dict[str, int]) -> None:
    """Act on a placement: per pool on a pooled backend, the total on any other (which has one pool)."""
    if isinstance(backend, PooledBackend):
        backend.scale_pools(counts)
    else:
        backend.scale_to(sum(counts.values()))
