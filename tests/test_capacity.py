"""Learned capacity: the knee where latency crosses the SLO, CPU saturation, lower bounds, decay, and the step of
decide() that plans with it."""

from __future__ import annotations

import numpy as np
import pytest

from controller.capacity import CapacityEvidence, LearnedCapacity
from controller.decide import DecisionState, Observations, decide
from controller.policy import ScalingPolicy
from controller.steps import capacity_in_use

SLO_MS = 50.0
T0 = 1_700_000_000.0


def feed(
    evidence: CapacityEvidence,
    loads: np.ndarray,
    *,
    true_capacity: float | None = 50.0,
    cpu_per_rps: float = 0.0,
    start: float = T0,
) -> None:
    """Seconds at the given loads per replica from a server whose p95 is 20 ms below its capacity and 300 ms (with
    a queue) above it."""
    over = loads > true_capacity if true_capacity is not None else np.zeros(len(loads), dtype=bool)
    evidence.add(
        start + np.arange(len(loads), dtype=np.float64),
        loads,
        np.where(over, 300.0, 20.0),
        np.where(over, 5.0, 0.0),
        5.0 + cpu_per_rps * loads,
        slo_p95_ms=SLO_MS,
    )


def test_the_knee_where_latency_crosses_the_slo_is_the_capacity() -> None:
    evidence = CapacityEvidence()
    rng = np.random.default_rng(3)
    feed(evidence, rng.uniform(10, 70, 5000))
    learned = evidence.estimate()
    assert learned is not None and learned.bracketed and learned.basis == "latency knee"
    assert learned.rps_per_replica == pytest.approx(50.0, rel=0.06)  # levels are 5 % apart
    assert learned.confidence == 1.0


def test_without_overload_only_a_lower_bound_is_known() -> None:
    evidence = CapacityEvidence()
    feed(evidence, np.random.default_rng(4).uniform(5, 35, 3000))
    learned = evidence.estimate()
    assert learned is not None and not learned.bracketed and learned.basis == "lower bound"
    assert 33 <= learned.rps_per_replica <= 38
    assert learned.confidence <= 0.5


def test_cpu_saturation_bounds_a_compute_bound_replica_before_latency_shows_anything() -> None:
    evidence = CapacityEvidence()
    feed(evidence, np.random.default_rng(5).uniform(5, 30, 3000), true_capacity=None, cpu_per_rps=2.0)
    learned = evidence.estimate(cpu_saturation_percent=90.0)
    assert learned is not None and learned.bracketed and learned.basis == "cpu saturation"
    assert learned.rps_per_replica == pytest.approx((90 - 5) / 2.0, rel=0.01)


def test_old_evidence_fades_with_the_half_life() -> None:
    evidence = CapacityEvidence(half_life_s=3600.0)
    feed(evidence, np.full(100, 20.0))
    before = sum(sum(counts) for counts in evidence.levels.values())
    feed(evidence, np.full(1, 20.0), start=T0 + 100 + 3600)
    after = sum(sum(counts) for counts in evidence.levels.values())
    assert after == pytest.approx(before / 2 + 1, rel=0.02)


def test_seconds_are_counted_once_and_the_evidence_survives_a_json_round_trip() -> None:
    evidence = CapacityEvidence()
    loads = np.random.default_rng(6).uniform(10, 70, 500)
    feed(evidence, loads)
    feed(evidence, loads)  # the same seconds again: nothing new
    assert sum(sum(c) for c in evidence.levels.values()) == pytest.approx(500)
    copy = CapacityEvidence.from_json(evidence.to_json(), evidence.half_life_s)
    assert copy.estimate() == evidence.estimate()
    assert CapacityEvidence.from_json({"levels": "garbage"}, 60.0).levels == {}


LEARNED = ScalingPolicy(capacity_mode="learned", replica_capacity_rps=40.0)


@pytest.mark.parametrize(
    ("learned", "expected", "says"),
    [
        (None, 40.0, "no evidence yet, starting value 40"),
        (LearnedCapacity(52.0, 4000, 0.9, "latency knee", True), 52.0, "learned 52.0 rps per replica"),
        (LearnedCapacity(60.0, 100, 0.2, "latency knee", True), 40.0, "below confidence 0.5: starting value 40"),
        (LearnedCapacity(20.0, 100, 0.2, "latency knee", True), 20.0, "learned 20.0"),  # a knee below the start
        (LearnedCapacity(35.0, 3000, 0.5, "lower bound", False), 35.0 / 0.7 * 1.1, "until the knee shows"),
        (LearnedCapacity(10.0, 3000, 0.5, "lower bound", False), 40.0, "until the knee shows"),
    ],
)
def test_the_capacity_in_use(learned: LearnedCapacity | None, expected: float, says: str) -> None:
    used, reason = capacity_in_use(LEARNED, learned)
    assert used == pytest.approx(expected) and reason.step == "capacity" and says in reason.message


def test_the_configured_capacity_stays_whatever_the_evidence_says() -> None:
    used, _ = capacity_in_use(ScalingPolicy(replica_capacity_rps=40.0), LearnedCapacity(80, 9000, 1.0, "latency knee", True))
    assert used == 40.0


def test_learned_is_shorthand_in_a_policy_and_decisions_plan_with_the_capacity_in_use() -> None:
    policy = ScalingPolicy.model_validate({"replica_capacity_rps": "learned", "target_utilisation": 0.5})
    assert policy.capacity_mode == "learned" and policy.replica_capacity_rps == ScalingPolicy().replica_capacity_rps
    rps = np.full(60, 400.0)
    observations = Observations(
        current_replicas=4, ready_replicas=4, rps=rps, last_sample_ts=T0 - 1,
        learned_capacity=LearnedCapacity(100.0, 5000, 1.0, "latency knee", True),
    )  # fmt: skip
    decision = decide(policy, observations, None, DecisionState(), T0)
    assert decision.capacity_rps == 100.0
    assert decision.desired == 8  # 400 rps at 50 % of the learned 100 rps per replica
    assert any(r.startswith("capacity: learned 100.0 rps per replica") for r in decision.reason_texts)
