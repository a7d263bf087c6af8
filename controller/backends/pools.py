"""A pooled backend made of one plain backend per capacity pool (``PooledBackend``): the Swarm backend runs a
service per pool (``<service>-<pool>``, placed on the pool's nodes by the service's placement constraints, e.g.
``node.labels.capacity == spot``); the Kubernetes one adds drain detection (kubernetes_pools.py)."""

from __future__ import annotations

from collections.abc import Mapping

from controller.backends.base import BackendError, PoolCounts, ReplicaBackend, ReplicaInfo


class PoolsBackend:
    """Implements ``ReplicaBackend`` (sums over the pools) and ``PooledBackend``."""

    def __init__(self, name: str, pools: Mapping[str, ReplicaBackend], kinds: Mapping[str, str]) -> None:
        if not pools:
            raise ValueError("a pooled backend needs at least one pool")
        self.name = name
        self.pools = dict(pools)
        self.kinds = dict(kinds)

    def _each(self, pool: str) -> ReplicaBackend:
        if pool not in self.pools:
            raise BackendError(
                f"no pool {pool!r} in backend_config 'pools' ({', '.join(sorted(self.pools))}): keep them and the "
                "policy's pools the same"
            )
        return self.pools[pool]

    def replicas(self) -> list[ReplicaInfo]:
        from dataclasses import replace

        return [replace(r, pool=p) for p, b in self.pools.items() for r in b.replicas()]

    def desired_count(self) -> int:
        return sum(b.desired_count() for b in self.pools.values())

    def ready_count(self) -> int:
        return sum(b.ready_count() for b in self.pools.values())

    def scale_to(self, replicas: int) -> None:
        """Without a placement (a policy without pools): all on the first on-demand pool, the others to 0."""
        first = next((p for p, k in self.kinds.items() if k == "on-demand"), next(iter(self.pools)))
        self.scale_pools({p: (replicas if p == first else 0) for p in self.pools})

    def scale_pools(self, counts: dict[str, int]) -> None:
        # Grow first, shrink last: a move between pools never has fewer replicas asked for than either side.
        current = {p: self._each(p).desired_count() for p in counts}
        for pool, count in sorted(counts.items(), key=lambda kv: kv[1] <= current[kv[0]]):
            if count != current[pool]:
                self._each(pool).scale_to(count)

    def pool_counts(self) -> dict[str, PoolCounts]:
        return {p: PoolCounts(b.desired_count(), b.ready_count()) for p, b in self.pools.items()}

    def close(self) -> None:
        for backend in self.pools.values():
            backend.close()
