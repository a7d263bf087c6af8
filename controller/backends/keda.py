"""KEDA backend: prewarm decides and records, KEDA applies.

For a Deployment scaled by a KEDA ScaledObject whose trigger is prewarm's external scaler (``mode: replicas``):
prewarm must not patch ``spec.replicas`` itself (KEDA's HPA owns it), but it still reads the Deployment's spec and
readiness (and measures pod startups) from the Kubernetes API like the Kubernetes backend. ``scale_to`` only
remembers the count, which the loop records as the decision and the external scaler serves to KEDA.
"""

from __future__ import annotations

import logging

from controller.backends.base import ReplicaInfo
from controller.backends.kubernetes import KubernetesBackend

logger = logging.getLogger(__name__)


class KedaBackend:
    """Implements ``ReplicaBackend`` over a read-only use of the Kubernetes backend."""

    name = "keda"

    def __init__(self, kubernetes: KubernetesBackend) -> None:
        self.kubernetes = kubernetes
        self.decided: int | None = None

    def desired_count(self) -> int:
        return self.kubernetes.desired_count()

    def ready_count(self) -> int:
        return self.kubernetes.ready_count()

    def replicas(self) -> list[ReplicaInfo]:
        return self.kubernetes.replicas()

    def scale_to(self, replicas: int) -> None:
        if replicas < 0:
            raise ValueError(f"cannot scale to {replicas} replicas")
        if replicas != self.decided:
            logger.info("%s: decided %d replicas; KEDA's HPA applies it (prewarm does not patch)",
                        self.kubernetes.target.ref, replicas)  # fmt: skip
        self.decided = replicas

    def close(self) -> None:
        self.kubernetes.close()
