"""Kubernetes with capacity pools: one Deployment per pool (``<name>-reserved``, ``<name>-spot``,
``<name>-on-demand``), each scaled through its own ``scale`` subresource (docs/kubernetes.md).

The pool Deployments carry the pool's node selector and tolerations (deploy/k8s/pools.yaml); prewarm only writes
their replica counts. Nodes being drained (cordoned: ``spec.unschedulable``, or tainted by the cluster autoscaler /
a node-termination handler) that host pods of a spot pool become interruption notices for the loop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from controller.backends.base import DrainNotice, PoolCounts, ReplicaInfo
from controller.backends.kubernetes import (
    KubernetesApiError,
    KubernetesBackend,
    KubernetesTarget,
    build_api_client,
)
from controller.backends.local_events import EventSink

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger(__name__)

# Taints that say a node is going away: cordon, the cluster autoscaler's scale-down, AWS node-termination-handler,
# Karpenter's disruption.
DRAIN_TAINTS = frozenset(
    {
        "node.kubernetes.io/unschedulable",
        "ToBeDeletedByClusterAutoscaler",
        "aws-node-termination-handler/spot-itn",
        "aws-node-termination-handler/rebalance-recommendation",
        "karpenter.sh/disrupted",
        "cloud.google.com/impending-node-termination",
    }
)


def node_draining(node: Any) -> str | None:
    """Why a node is being drained (cordoned or a drain taint), or None."""
    spec = node.spec
    if spec is not None and spec.unschedulable:
        return "cordoned"
    for taint in (spec.taints if spec is not None else None) or []:
        if taint.key in DRAIN_TAINTS:
            return f"taint {taint.key}"
    return None


class KubernetesPoolsBackend:
    """Implements ``ReplicaBackend`` (the sums over the pools) and ``PooledBackend``."""

    name = "kubernetes"

    def __init__(
        self,
        target: KubernetesTarget,
        pools: Mapping[str, str],
        api_client: ApiClient | None = None,
        sleep: Callable[[float], None] | None = None,
        events: EventSink | None = None,
    ) -> None:
        """``pools``: pool name -> kind; pool ``p`` is the Deployment ``<target.deployment>-<p>``."""
        if not pools:
            raise ValueError("a pooled Kubernetes backend needs at least one pool")
        self.target = target
        self.kinds = dict(pools)
        self._api_client = api_client if api_client is not None else build_api_client(target)
        extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        self.pools = {
            pool: KubernetesBackend(
                dataclasses.replace(target, deployment=f"{target.deployment}-{pool}"),
                api_client=self._api_client,
                events=events,
                **extra,
            )
            for pool in pools
        }

    def _each(self, pool: str) -> KubernetesBackend:
        try:
            return self.pools[pool]
        except KeyError:
            raise KubernetesApiError(
                f"{self.target.ref}: no pool {pool!r}; the backend_config names {sorted(self.pools)} (keep "
                "backend_config 'pools' and the policy's pools the same)",
                422,
            ) from None

    def replicas(self) -> list[ReplicaInfo]:
        return [r for backend in self.pools.values() for r in backend.replicas()]

    def desired_count(self) -> int:
        return sum(backend.desired_count() for backend in self.pools.values())

    def ready_count(self) -> int:
        return sum(backend.ready_count() for backend in self.pools.values())

    def scale_to(self, replicas: int) -> None:
        """Without a placement (a policy without pools): everything on the first on-demand pool, others to 0."""
        on_demand = next((p for p, kind in self.kinds.items() if kind == "on-demand"), next(iter(self.pools)))
        self.scale_pools({p: (replicas if p == on_demand else 0) for p in self.pools})

    def scale_pools(self, counts: dict[str, int]) -> None:
        # Grow first, shrink last: a move between pools never has fewer replicas asked for than either side.
        for pool, count in sorted(counts.items(), key=lambda kv: kv[1] <= self._each(kv[0]).desired_count()):
            self._each(pool).scale_to(count)

    def pool_counts(self) -> dict[str, PoolCounts]:
        return {p: PoolCounts(b.desired_count(), b.ready_count()) for p, b in self.pools.items()}

    def drain_notices(self) -> list[DrainNotice]:
        """Pods of spot pools on nodes being drained. Best effort: an API failure logs and returns none."""
        from kubernetes import client

        spot = [p for p, kind in self.kinds.items() if kind == "spot"]
        if not spot:
            return []
        core = client.CoreV1Api(self._api_client)
        timeout = (self.target.request_timeout_s, self.target.request_timeout_s)
        try:
            nodes = core.list_node(_request_timeout=timeout)
            draining = {
                str(n.metadata.name): why
                for n in nodes.items
                if n.metadata is not None and (why := node_draining(n)) is not None
            }
            if not draining:
                return []
            notices: list[DrainNotice] = []
            for pool in spot:
                for info_pod in self._pods(core, pool, timeout):
                    node = info_pod.spec.node_name if info_pod.spec else None
                    if node in draining and info_pod.metadata.deletion_timestamp is None:
                        notices.append(
                            DrainNotice(pool, info_pod.metadata.name, f"node {node} {draining[node]}")
                        )
            return notices
        except Exception as error:
            logger.warning("%s: cannot look for drained nodes: %s", self.target.ref, error)
            return []

    def _pods(self, core: Any, pool: str, timeout: tuple[float, float]) -> list[Any]:
        backend = self.pools[pool]
        deployment = backend._apps.read_namespaced_deployment(
            backend.target.deployment, backend.target.namespace, _request_timeout=timeout
        )
        selector = backend._selector(deployment)
        return list(
            core.list_namespaced_pod(
                backend.target.namespace, label_selector=selector, _request_timeout=timeout
            ).items
        )

    def close(self) -> None:
        self._api_client.close()
