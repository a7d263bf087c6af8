"""ScalingPolicy and override values: defaults and validation messages a user can act on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.overrides import InvalidOverride, OverrideKind, OverrideValue, active_overrides
from controller.policy import ScalingPolicy


def test_defaults_follow_the_design() -> None:
    p = ScalingPolicy()
    assert (p.cpu_scale_up_percent, p.cpu_scale_down_percent) == (70, 30)
    assert (p.memory_scale_up_percent, p.memory_scale_down_percent) == (80, 40)
    assert (p.latency_p95_scale_up_ms, p.queue_length_scale_up, p.tolerance) == (100, 10, 0.1)
    assert (p.scale_down_stabilisation_s, p.panic_window_s, p.panic_threshold) == (300, 6, 2.0)


def test_max_below_min_is_rejected_with_a_fix() -> None:
    with pytest.raises(ValidationError, match="raise max_replicas or lower min_replicas"):
        ScalingPolicy(min_replicas=5, max_replicas=3)


def test_inverted_cpu_thresholds_are_rejected() -> None:
    with pytest.raises(ValidationError, match="must be below cpu_scale_up_percent"):
        ScalingPolicy(cpu_scale_down_percent=80)


def test_money_budget_needs_a_price() -> None:
    with pytest.raises(ValidationError, match="needs price_per_replica_hour"):
        ScalingPolicy(budget_money_per_hour=10)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="max_replica"):
        ScalingPolicy.model_validate({"max_replica": 3})


def test_policy_round_trips_through_json() -> None:
    p = ScalingPolicy(max_replicas=20, max_step_up=4)
    assert ScalingPolicy.model_validate_json(p.model_dump_json()) == p


def test_pin_needs_a_value() -> None:
    with pytest.raises(InvalidOverride, match="needs a replica count"):
        OverrideValue(OverrideKind.PIN, 0, 10)


def test_freeze_takes_no_value() -> None:
    with pytest.raises(InvalidOverride, match="takes no value"):
        OverrideValue(OverrideKind.FREEZE, 0, 10, 3)


def test_override_must_end_after_it_starts() -> None:
    with pytest.raises(InvalidOverride, match="must be after"):
        OverrideValue(OverrideKind.FREEZE, 10, 10)


def test_only_active_overrides_are_kept() -> None:
    past = OverrideValue(OverrideKind.FREEZE, 0, 10)
    now = OverrideValue("floor", 5, 20, 3)  # type: ignore[arg-type]
    assert active_overrides([past, now], 10) == (now,)
