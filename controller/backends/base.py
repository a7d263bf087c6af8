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
