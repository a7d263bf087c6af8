"""Build a deployment's replica backend from its row (``backend`` and ``backend_config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from controller.backends.base import BackendError, ReplicaBackend
from controller.backends.local_events import EventSink, LogEventSink, StoreEventSink

BACKENDS = ("local", "kubernetes", "keda", "swarm", "dry-run")


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
    if backend in ("kubernetes", "keda"):
        from controller.backends.kubernetes import KubernetesBackend, KubernetesTarget

        config = dict(backend_config)
        pools = config.pop("pools", None)
        try:
            target = KubernetesTarget.from_config(config, default_name=name)
            if pools is not None and backend == "kubernetes":
                from controller.backends.kubernetes_pools import KubernetesPoolsBackend

                return KubernetesPoolsBackend(target, _pool_kinds(pools), events=_events(engine, name))
        except (TypeError, ValueError) as error:
            raise BackendError(f"deployment {name!r}: {error}") from error
        kubernetes = KubernetesBackend(target, events=_events(engine, name))
        if backend == "keda":
            from controller.backends.keda import KedaBackend

            return KedaBackend(kubernetes)
        return kubernetes
    if backend == "swarm":
        from controller.backends.swarm import SwarmBackend, SwarmTarget

        swarm_config = dict(backend_config)
        swarm_pools = swarm_config.pop("pools", None)
        try:
            swarm_target = SwarmTarget.from_config(swarm_config, default_name=name)
            if swarm_pools is not None:
                import dataclasses

                from controller.backends.pools import PoolsBackend

                kinds = _pool_kinds(swarm_pools)
                per_pool: dict[str, ReplicaBackend] = {
                    pool: SwarmBackend(
                        dataclasses.replace(swarm_target, service=f"{swarm_target.service}-{pool}"),
                        events=_events(engine, name),
                    )
                    for pool in kinds
                }
                return PoolsBackend("swarm", per_pool, kinds)
        except (TypeError, ValueError) as error:
            raise BackendError(f"deployment {name!r}: {error}") from error
        return SwarmBackend(swarm_target, events=_events(engine, name))
    if backend == "local":
        from controller.backends.local import LocalProcessBackend

        return LocalProcessBackend.from_deployment(
            name, model, backend_config, state_root, events=_events(engine, name)
        )
    raise BackendError(
        f"deployment {name!r}: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}"
    )


def _pool_kinds(pools: object) -> dict[str, str]:
    """backend_config 'pools': pool name -> kind, as the policy's pools."""
    if not isinstance(pools, dict) or not pools or not all(isinstance(v, str) for v in pools.values()):
        raise ValueError(
            "backend_config 'pools' maps each pool name to its kind, e.g. "
            '{"spot": "spot", "on-demand": "on-demand"}'
        )
    return {str(k): v for k, v in pools.items()}


def _events(engine: Engine | None, name: str) -> EventSink:
    """Replica events go to the store (where the loop reads the measured startup), or to the log without one."""
    return StoreEventSink(engine, name) if engine is not None else LogEventSink()
