"""Learned capacity: the knee where latency crosses the SLO, CPU saturation, lower bounds, decay, and the step of
decide() that plans with it."""

from __future__ import annotations

import numpy as np
import pytest

from controller.capacity import CapacityEvidence, LearnedCapacity, learn
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


def test_a_second_after_a_backlog_is_no_evidence_about_its_own_load() -> None:
    """Under-provisioned (a start too high): requests pile up at 60 rps per replica (capacity 50), then replicas
    are added and the load per replica falls to 20, but the queue keeps latency high while it drains. Those
    seconds must not look like a knee at 20 rps."""
    evidence = CapacityEvidence()
    cycle_loads = np.concatenate([np.full(60, 60.0), np.full(40, 20.0), np.linspace(10, 30, 20)])
    cycle_queue = np.concatenate([np.linspace(10, 600, 60), np.linspace(600, 5, 40), np.zeros(20)])
    loads, queue = np.tile(cycle_loads, 20), np.tile(cycle_queue, 20)
    latency = np.where(queue > 0, 900.0, 22.0)
    evidence.add(T0 + np.arange(len(loads), dtype=np.float64), loads, latency, queue, np.full(len(loads), 3.0),
                 slo_p95_ms=SLO_MS)  # fmt: skip
    learned = evidence.estimate()
    assert learned is None or learned.rps_per_replica > 25, learned


def test_seconds_with_a_backlog_measure_the_saturation_throughput_directly() -> None:
    """Replicas answering one request at a time in 20 ms serve 50 rps each once requests queue, whatever arrives."""
    evidence = CapacityEvidence()
    rng = np.random.default_rng(9)
    loads = rng.uniform(30, 80, 2000)
    queue = np.where(loads > 50, 8.0, 0.0)  # a backlog while arrivals exceed what the replicas answer
    served = np.minimum(loads, 50.0) + rng.normal(0, 0.5, len(loads))
    latency = np.where(loads > 50, 200.0, 22.0)
    evidence.add(T0 + np.arange(len(loads), dtype=np.float64), loads, latency, queue, np.full(len(loads), 3.0),
                 served, slo_p95_ms=SLO_MS)  # fmt: skip
    learned = evidence.estimate()
    assert learned is not None and learned.basis == "saturation throughput" and learned.bracketed
    assert learned.rps_per_replica == pytest.approx(50.0, rel=0.04)
    assert learned.confidence == 1.0


def test_bad_seconds_at_a_low_load_with_good_ones_above_are_no_knee() -> None:
    evidence = CapacityEvidence()
    feed(evidence, np.random.default_rng(8).uniform(20, 45, 3000))
    evidence.add(T0 + 5000 + np.arange(30.0), np.full(30, 5.0), np.full(30, 400.0), np.zeros(30), np.full(30, 5.0),
                 slo_p95_ms=SLO_MS)  # fmt: skip  (30 s of a cold start at a low load)
    learned = evidence.estimate()
    assert learned is not None and learned.basis == "lower bound" and learned.rps_per_replica > 40


def test_a_knee_seen_in_few_busy_seconds_is_judged_with_its_neighbours_not_borrowed_from_above() -> None:
    """As in a day's replay: plenty of seconds below the knee (a tenth of them bad at 36-40 rps from sub-second
    bursts), few past it (a dozen at 42-48 rps, three quarters bad). The knee is at 42, not where a level borrowing
    the busier seconds above it would put it."""
    rng = np.random.default_rng(12)
    loads = np.concatenate([rng.uniform(20, 36, 150), np.linspace(36, 40.9, 30), np.linspace(42, 48, 12)])
    bad = np.concatenate([np.zeros(150, bool), np.arange(30) % 10 == 0, np.arange(12) % 4 != 0])
    evidence = CapacityEvidence()
    evidence.add(T0 + np.arange(len(loads), dtype=np.float64), loads, np.where(bad, 80.0, 22.0),
                 np.zeros(len(loads)), np.full(len(loads), 3.0), slo_p95_ms=SLO_MS)  # fmt: skip
    learned = evidence.estimate()
    assert learned is not None and learned.basis == "latency knee"
    assert 40 <= learned.rps_per_replica <= 42.5, learned


def test_a_few_bad_seconds_at_the_top_do_not_drag_the_lower_bound_below_the_loads_served_well() -> None:
    """Served well up to 40 rps (a tenth of the seconds at 36-40 bad, as bursts make them), and four seconds at 44,
    half of them bad: too few for a knee. The bound is where the seconds were served well, not where enough good
    seconds below dilute the bad ones above (that rule put it at 34 and held a probe below the knee)."""
    rng = np.random.default_rng(13)
    loads = np.concatenate([rng.uniform(20, 36, 150), np.linspace(36, 40.9, 20), np.full(4, 44.0)])
    bad = np.concatenate([np.zeros(150, bool), np.arange(20) % 10 == 0, np.array([True, False, True, False])])
    evidence = CapacityEvidence()
    evidence.add(T0 + np.arange(len(loads), dtype=np.float64), loads, np.where(bad, 80.0, 22.0),
                 np.zeros(len(loads)), np.full(len(loads), 3.0), slo_p95_ms=SLO_MS)  # fmt: skip
    learned = evidence.estimate()
    assert learned is not None and learned.basis == "lower bound"
    assert learned.rps_per_replica >= 36, learned


def test_the_strain_is_where_a_quarter_of_the_seconds_go_bad_before_any_knee_shows() -> None:
    """Served well up to 36 rps, a third of the seconds bad at 36-40 (bursts), nothing busier: no knee yet, a lower
    bound at 36, and the strain just past it, where the bad seconds begin."""
    rng = np.random.default_rng(15)
    loads = np.concatenate([rng.uniform(20, 35.9, 200), rng.uniform(36, 40, 30)])
    bad = np.concatenate([np.zeros(200, bool), np.arange(30) % 3 == 0])
    evidence = CapacityEvidence()
    evidence.add(T0 + np.arange(len(loads), dtype=np.float64), loads, np.where(bad, 80.0, 22.0),
                 np.zeros(len(loads)), np.full(len(loads), 3.0), slo_p95_ms=SLO_MS)  # fmt: skip
    learned = evidence.estimate()
    assert learned is not None and learned.basis == "lower bound" and not learned.bracketed
    assert learned.strained_rps is not None and 34 <= learned.strained_rps <= 40, learned
    assert learned.rps_per_replica <= learned.strained_rps
    assert "a quarter of the seconds bad from" in learned.describe()
    calm = CapacityEvidence()  # without the bad seconds: no strain
    calm.add(T0 + np.arange(len(loads), dtype=np.float64), loads, np.full(len(loads), 22.0), np.zeros(len(loads)),
             np.full(len(loads), 3.0), slo_p95_ms=SLO_MS)  # fmt: skip
    assert (calm.estimate() or learned).strained_rps is None


def test_a_second_in_which_a_replica_joined_counts_at_the_load_of_the_replicas_that_served_through_it() -> None:
    """Overloaded on two replicas (60 rps each, capacity 50) until a third joins late in the second: the gateway
    counts three ready as the second closes. That second's latency belongs to 120 rps on two replicas, not 40 on
    three; counted at 40 it looked like a knee there."""
    rng = np.random.default_rng(14)
    good = rng.uniform(10, 45, 300)
    rps = np.concatenate([good * 3, np.tile([60.0, 120.0, 60.0, 60.0], 15)])
    # two replicas, then a third joins during the second of 120 rps (and leaves again after two calm seconds)
    ready = np.concatenate([np.full(300, 3.0), np.tile([2.0, 3.0, 3.0, 3.0], 15)])
    latency = np.concatenate([np.full(300, 22.0), np.tile([22.0, 300.0, 22.0, 22.0], 15)])
    evidence = CapacityEvidence()
    timestamps = T0 + np.arange(len(rps), dtype=np.float64)
    zeros = np.zeros(len(rps))
    learned = learn(evidence, timestamps, rps, ready, latency, zeros, zeros + 3.0, slo_p95_ms=SLO_MS,
                    cpu_saturation_percent=90.0, half_life_s=86_400.0)  # fmt: skip
    assert learned is not None and learned.rps_per_replica > 45, learned  # (a knee at 60, past the 45 served well)


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
    counted = sum(sum(c) for c in evidence.levels.values())
    feed(evidence, loads)  # the same seconds again: nothing new
    assert sum(sum(c) for c in evidence.levels.values()) == counted > 250  # (seconds after a backlog are not)
    copy = CapacityEvidence.from_json(evidence.to_json(), evidence.half_life_s)
    assert copy.estimate() == evidence.estimate()
    assert CapacityEvidence.from_json({"levels": "garbage"}, 60.0).levels == {}


LEARNED = ScalingPolicy(capacity_mode="learned", replica_capacity_rps=40.0, capacity_probe_interval_s=60)
BLANK = DecisionState()


@pytest.mark.parametrize(
    ("learned", "expected", "says"),
    [
        (None, 40.0, "no evidence yet, starting value 40"),
        (LearnedCapacity(52.0, 4000, 0.9, "latency knee", True), 52.0, "learned 52.0 rps per replica"),
        (LearnedCapacity(60.0, 100, 0.2, "latency knee", True), 40.0, "below confidence 0.5: starting value 40"),
        (LearnedCapacity(20.0, 100, 0.2, "latency knee", True), 20.0, "learned 20.0"),  # a knee below the start
        (LearnedCapacity(35.0, 3000, 0.5, "lower bound", False), 40.0, "probing 40.0 rps per replica"),
    ],
)
def test_the_capacity_in_use(learned: LearnedCapacity | None, expected: float, says: str) -> None:
    used, reason, _ = capacity_in_use(LEARNED, learned, BLANK, T0)
    assert used == pytest.approx(expected) and reason.step == "capacity" and says in reason.message


def test_a_lower_bound_probes_upward_a_step_at_a_time_within_twice_the_bound_and_comes_down_with_it() -> None:
    state, now, used = BLANK, T0, 40.0
    bound = LearnedCapacity(30.0, 3000, 0.5, "lower bound", False)
    seen = []
    for _ in range(9):  # one step per interval, up to twice the bound
        used, reason, probe = capacity_in_use(LEARNED, bound, state, now)
        seen.append(used)
        state, now = DecisionState(capacity_probe=probe), now + 60
    assert seen[:4] == pytest.approx([40.0, 44.0, 48.4, 53.24]) and seen[-1] == pytest.approx(60.0)
    assert "at most 60.0: 2x the bound" in reason.message
    lower = LearnedCapacity(25.0, 3000, 0.5, "lower bound", False)  # bad seconds lowered the bound: so does the probe
    assert capacity_in_use(LEARNED, lower, state, now)[0] == pytest.approx(50.0)
    floor = LearnedCapacity(10.0, 3000, 0.5, "lower bound", False)  # never below the start for want of evidence
    assert capacity_in_use(LEARNED, floor, state, now + 600)[0] == pytest.approx(40.0)
    knee = LearnedCapacity(50.0, 3000, 0.9, "latency knee", True)
    assert capacity_in_use(LEARNED, knee, state, now + 60)[:1] == (50.0,)


def test_a_probe_stops_at_the_strain_and_a_start_above_it_comes_down_to_it() -> None:
    """The probe of the test above rises to twice the bound unless the seconds go bad first: it holds where a
    quarter of them did (it ran to 47-67 rps on a 41-43 rps replica, 6 % of a day's seconds violating once)."""
    state, now, used = BLANK, T0, 40.0
    strained = LearnedCapacity(30.0, 3000, 0.5, "lower bound", False, strained_rps=46.0)
    for _ in range(9):
        used, reason, probe = capacity_in_use(LEARNED, strained, state, now)
        state, now = DecisionState(capacity_probe=probe), now + 60
    assert used == pytest.approx(46.0) and "held at the strain" in reason.message
    assert state.capacity_probe is not None and state.capacity_probe[0] == pytest.approx(46.0)  # not climbing on
    low = LearnedCapacity(30.0, 3000, 0.5, "lower bound", False, strained_rps=36.0)  # a start above the strain
    assert capacity_in_use(LEARNED, low, BLANK, T0)[0] == pytest.approx(36.0)
    unsure = LearnedCapacity(60.0, 100, 0.2, "latency knee", True, strained_rps=36.0)  # a knee not confident yet
    assert capacity_in_use(LEARNED, unsure, BLANK, T0)[0] == pytest.approx(36.0)


def test_the_configured_capacity_stays_whatever_the_evidence_says() -> None:
    knee = LearnedCapacity(80, 9000, 1.0, "latency knee", True)
    assert capacity_in_use(ScalingPolicy(replica_capacity_rps=40.0), knee, BLANK, T0)[0] == 40.0


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
