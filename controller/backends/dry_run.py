"""Dry-run backend: records and logs every scale request, never acts.

Used alone it pretends the requested replicas are ready at once (for trying a policy with no replicas at all).
Wrapping a real backend (``observe=``) it reports that backend's replicas and ready count, so decisions are made
on the live state, but it never forwards ``scale_to``: the shadow mode for checking a policy on production.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from controller.backends.base import PoolCounts, ReplicaBackend, ReplicaInfo, ReplicaState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaleRequest:
    """One ``scale_to`` call the dry-run backend received (and did not carry out)."""

    ts: float  # epoch seconds
    replicas: int
    previous: int  # the count the backend reported when asked
    pools: dict[str, int] | None = None  # the placement asked for, per capacity pool


class DryRunBackend:
    """Implements ``ReplicaBackend``; keeps the last ``history`` scale requests in memory."""

    name = "dry-run"

    def __init__(
        self,
        initial_replicas: int = 1,
        observe: ReplicaBackend | None = None,
        history: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if initial_replicas < 0:
            raise ValueError("initial_replicas must not be negative")
        self._pretended = initial_replicas
        self._observe = observe
        self._clock = clock
        self.requests: deque[ScaleRequest] = deque(maxlen=history)

    def replicas(self) -> list[ReplicaInfo]:
        if self._observe is not None:
            return self._observe.replicas()
        return [ReplicaInfo(f"dry-run-{i}", ReplicaState.READY) for i in range(self._pretended)]

    def desired_count(self) -> int:
        if self._observe is not None:
            return self._observe.desired_count()
        return self._pretended

    def ready_count(self) -> int:
        if self._observe is not None:
            return self._observe.ready_count()
        return self._pretended

    def scale_to(self, replicas: int) -> None:
        if replicas < 0:
            raise ValueError(f"cannot scale to {replicas} replicas")
        previous = self.ready_count()
        self.requests.append(ScaleRequest(ts=self._clock(), replicas=replicas, previous=previous))
        if self._observe is None:
            self._pretended = replicas
        logger.info("dry-run: would scale from %d to %d replicas (not acting)", previous, replicas)

    def scale_pools(self, counts: dict[str, int]) -> None:
        """Record the placement (never forwarded); the total as ``scale_to`` would."""
        total = sum(counts.values())
        if min(counts.values(), default=0) < 0:
            raise ValueError(f"cannot scale pools to {counts}")
        previous = self.ready_count()
        self.requests.append(ScaleRequest(self._clock(), total, previous, dict(counts)))
        if self._observe is None:
            self._pretended = total
        self._pool_plan = dict(counts)
        logger.info("dry-run: would place %s (total %d, not acting)", counts, total)

    def pool_counts(self) -> dict[str, PoolCounts]:
        """The last placement recorded, as if every replica were ready."""
        return {pool: PoolCounts(n, n) for pool, n in getattr(self, "_pool_plan", {}).items()}

    @property
    def last_requested(self) -> int | None:
        """The count of the latest scale request, None before the first."""
        return self.requests[-1].replicas if self.requests else None

    def close(self) -> None:
        """Closes the observed backend too: the dry-run backend owns what it wraps."""
        if self._observe is not None:
            self._observe.close()
