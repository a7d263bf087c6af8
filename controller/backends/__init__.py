"""Replica backends: the one small protocol every way of running replicas implements."""

from controller.backends.base import BackendError, ReplicaBackend, ReplicaInfo, ReplicaState
from controller.backends.factory import BACKENDS, build_backend

__all__ = ["BACKENDS", "BackendError", "ReplicaBackend", "ReplicaInfo", "ReplicaState", "build_backend"]
