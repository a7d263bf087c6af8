"""Replica backends: the one small protocol every way of running replicas implements."""

from controller.backends.base import ReplicaBackend, ReplicaInfo, ReplicaState

__all__ = ["ReplicaBackend", "ReplicaInfo", "ReplicaState"]
