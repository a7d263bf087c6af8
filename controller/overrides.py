"""Operator overrides: values that beat the policy for a while and stop applying by themselves when they end."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class OverrideKind(StrEnum):
    """What an override does; ``value`` is needed by PIN and FLOOR only."""

    PIN = "pin"  # exactly ``value`` replicas
    FLOOR = "floor"  # at least ``value`` replicas (a known event)
    FREEZE = "freeze"  # keep the current count, no changes
    REACTIVE_ONLY = "reactive-only"  # ignore the forecast
    DRY_RUN = "dry-run"  # decide and log, never act


KINDS_WITH_VALUE = frozenset({OverrideKind.PIN, OverrideKind.FLOOR})


class InvalidOverride(ValueError):
    """The override cannot be applied as given; the message says what to change."""


@dataclass(frozen=True)
class OverrideValue:
    """One override active from ``starts_at`` (inclusive) to ``ends_at`` (exclusive), epoch seconds."""

    kind: OverrideKind
    starts_at: float
    ends_at: float = math.inf
    value: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OverrideKind(self.kind))
        if not self.ends_at > self.starts_at:
            raise InvalidOverride(
                f"{self.kind}: ends_at ({self.ends_at}) must be after starts_at ({self.starts_at})"
            )
        if self.kind in KINDS_WITH_VALUE:
            if self.value is None or self.value < 0:
                raise InvalidOverride(f"{self.kind} needs a replica count value >= 0, got {self.value}")
        elif self.value is not None:
            raise InvalidOverride(f"{self.kind} takes no value, got {self.value}")

    def active_at(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at


def active_overrides(overrides: Iterable[OverrideValue], now: float) -> tuple[OverrideValue, ...]:
    """The overrides that apply at ``now``; expired and future ones are dropped."""
    return tuple(o for o in overrides if o.active_at(now))
