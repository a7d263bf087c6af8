"""Build a deployment's replica backend from its row (``backend`` and ``backend_config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from controller.backends.base import BackendError, ReplicaBackend

BACKENDS = ("local", "kubernetes", "dry-run")


def build_backend(
    *,
    name: str,
    model: str,
    backend: str,
    backend_config: dict[str, Any],
    min_replicas: int,
    engine: Engine | None,
    state_root: Path,
) -> ReplicaBackend:
    """The backend a deployment asks for; raises BackendError for an unknown kind or bad settings."""
    if backend == "dry-run":
        from controller.backends.dry_run import DryRunBackend

        return DryRunBackend(initial_replicas=int(backend_config.get("initial_replicas", min_replicas)))
    if backend == "kubernetes":
        from controller.backends.kubernetes import KubernetesBackend, KubernetesTarget

        try:
            target = KubernetesTarget.from_config(backend_config, default_name=name)
        except (TypeError, ValueError) as error:
            raise BackendError(f"deployment {name!r}: {error}") from error
        return KubernetesBackend(target)
    if backend == "local":
        from controller.backends.local import LocalProcessBackend
        from controller.backends.local_events import EventSink, LogEventSink, StoreEventSink

        events: EventSink = StoreEventSink(engine, name) if engine is not None else LogEventSink()
        return LocalProcessBackend.from_deployment(name, model, backend_config, state_root, events=events)
    raise BackendError(
        f"deployment {name!r}: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}"
    )
