"""Capacity pools: where a deployment's replicas come from and what each costs (docs/cost.md).

``reserved`` capacity is committed (paid every hour, used or not, so it needs a size), ``on-demand`` is paid while it
runs, ``spot`` is cheaper but can be taken back with a notice. A policy without pools has one on-demand pool at its
``price_per_replica_hour``: today's behaviour.
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PoolKind = Literal["reserved", "on-demand", "spot"]
POOL_KINDS: tuple[PoolKind, ...] = ("reserved", "on-demand", "spot")
DEFAULT_POOL = "on-demand"  # the implicit pool of a policy without pools
MAX_POOLS = 8
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Toleration(BaseModel):
    """A Kubernetes toleration for the pool's Deployment (e.g. the spot node taint)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1, max_length=253, description="The taint key tolerated.")
    operator: Literal["Equal", "Exists"] = Field(default="Equal", description="Equal (with value) or Exists.")
    value: str | None = Field(default=None, max_length=63, description="The taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect tolerated; None: every effect."
    )


class CapacityPool(BaseModel):
    """One source of replicas with its price. Its Kubernetes Deployment is ``<deployment>-<name>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=40,
        description="DNS-label-safe name (lower-case letters, digits, '-'), e.g. 'spot'; suffix of its Deployment.",
    )
    kind: PoolKind = Field(
        description="'reserved' (committed, paid always), 'on-demand' or 'spot' (can be taken back)."
    )
    price_per_replica_hour: float = Field(ge=0, description="Money per replica-hour in this pool.")
    max_replicas: int | None = Field(
        default=None,
        ge=0,
        description="Most replicas this pool holds (for 'reserved': the committed size, required). None: no limit.",
    )
    startup_s: float | None = Field(
        default=None,
        gt=0,
        description="Replica startup in this pool when it differs (the simulator uses it).",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Kubernetes nodeSelector of the pool's Deployment."
    )
    tolerations: tuple[Toleration, ...] = Field(
        default=(), description="Kubernetes tolerations of the pool's Deployment (spot taints)."
    )

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        if not _DNS_LABEL.match(name):
            raise ValueError(
                f"pool name {name!r} must be a DNS label: lower-case letters, digits and '-', starting and ending "
                "with a letter or digit (it names a Kubernetes Deployment)"
            )
        return name

    @model_validator(mode="after")
    def _reserved_has_size(self) -> Self:
        if self.kind == "reserved" and self.max_replicas is None:
            raise ValueError(
                f"reserved pool {self.name!r} needs max_replicas: its committed size (paid whether used or not); "
                "`prewarm cost plan` recommends one"
            )
        return self


def check_pools(pools: tuple[CapacityPool, ...], max_replicas: int) -> None:
    """Raise ``ValueError`` with what to change when a pool list cannot work."""
    if len(pools) > MAX_POOLS:
        raise ValueError(f"at most {MAX_POOLS} pools ({len(pools)} given)")
    names = [p.name for p in pools]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"pool names must be unique; repeated: {', '.join(duplicated)}")
    if not pools:
        return
    if not any(p.kind != "spot" for p in pools):
        raise ValueError(
            "pools need at least one reserved or on-demand pool: spot capacity alone can all be taken back"
        )
    room = sum(p.max_replicas for p in pools if p.max_replicas is not None and p.kind != "spot")
    unlimited = any(p.max_replicas is None and p.kind == "on-demand" for p in pools)
    if not unlimited and room < max_replicas:
        raise ValueError(
            f"the reserved and on-demand pools hold at most {room} replicas but max_replicas is {max_replicas}: "
            "leave one on-demand pool without max_replicas, or raise their sizes (spot cannot be relied on)"
        )


def effective_pools(
    pools: tuple[CapacityPool, ...], price_per_replica_hour: float
) -> tuple[CapacityPool, ...]:
    """The pools a policy places into: its own, or the single implicit on-demand pool."""
    if pools:
        return pools
    return (CapacityPool(name=DEFAULT_POOL, kind="on-demand", price_per_replica_hour=price_per_replica_hour),)
