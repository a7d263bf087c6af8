"""Simulator at zero: the activator (held requests, poke), cold-start accounting, KPA with zero, sparse traces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.policy import ScalingPolicy
from controller.simulation.baselines import KpaAutoscaler
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import ClusterView, simulate_closed_loop
from controller.simulation.metrics import cold_starts
from controller.simulation.prewarm_policy import PrewarmAutoscaler
from controller.simulation.sparse import keep_for_mean_rate, quietest_hour, thinned_arrivals
from controller.simulation.workload import Workload
from controller.simulation.zero_run import run_zero
from prewarm.traces import TRACES_DIR, Trace, load_trace

CLUSTER = ClusterModel(replica_capacity_rps=100.0, prewarm_s=5.0, scheduling_delay_s=5.0)  # startup 10 s


def workload(arrivals: np.ndarray) -> Workload:
    return Workload("hand", 1_000_000.0, arrivals.astype(float), 1.0, 1, float(arrivals.max()))


@dataclass
class Recorder:
    """Zero until it sees requests (or is told of held ones), then one: records when it was asked."""

    name: str = "recorder"
    interval_s: int = 10
    asked_at: list[int] | None = None

    def desired(self, view: ClusterView) -> int:
        if self.asked_at is None:
            self.asked_at = []
        self.asked_at.append(view.t)
        return 1 if view.arrivals[-1] > 0 or view.queue[-1] > 0 else (0 if view.ready == 0 else view.current)


def test_at_zero_the_activator_pokes_the_autoscaler_the_second_after_a_request() -> None:
    arrivals = np.zeros(100)
    arrivals[33] = 4
    recorder = Recorder()
    run = simulate_closed_loop(recorder, workload(arrivals), CLUSTER, 0, 0, 5)
    assert recorder.asked_at is not None and 34 in recorder.asked_at  # not only at 30 and 40
    assert run.ready[44] == 1 and run.ready[43] == 0  # asked at 34, ready 10 s later
    assert run.dropped.sum() == 0 and run.served.sum() == 4  # held, then served: nothing lost
    cold = cold_starts(run.ready, arrivals)
    assert cold.requests == 4 and cold.wait_p50_s == 44 - 33 - 0.5


def test_cold_starts_weigh_waits_by_requests() -> None:
    ready = np.array([0, 0, 0, 1, 1, 0, 0, 1, 0], dtype=float)
    arrivals = np.array([1, 0, 9, 5, 0, 0, 1, 0, 2], dtype=float)
    cold = cold_starts(ready, arrivals)
    assert cold.requests == 1 + 9 + 1 + 2
    assert cold.wait_p50_s == 0.5  # the 9 requests of second 2 wait until second 3
    assert cold.wait_max_s == 2.5  # second 0 -> 3; second 8 is censored at the end: 9 - 8 - 0.5
    assert cold_starts(np.ones(3), np.ones(3)).requests == 0


def test_prewarm_at_zero_sees_held_requests_and_activates() -> None:
    arrivals = np.zeros(600)
    arrivals[:20] = 1
    arrivals[400:403] = 2
    policy = ScalingPolicy(min_replicas=0, replica_capacity_rps=100.0, max_replicas=5)
    autoscaler = PrewarmAutoscaler(policy, use_forecast=False)
    run = simulate_closed_loop(autoscaler, workload(arrivals), CLUSTER, 1, 0, 5)
    assert run.billed[100:400].max() == 0  # idle for the grace period: zero
    assert autoscaler.sources["scale-to-zero"] > 0 and autoscaler.sources["activate"] > 0
    assert run.ready[401 + 10] == 1  # activated the second after the first request, ready one startup later
    assert run.dropped.sum() == 0 and run.served.sum() == arrivals.sum()


def test_kpa_with_zero_waits_for_its_window_and_grace_then_wakes_on_a_request() -> None:
    arrivals = np.zeros(400)
    arrivals[:10] = 50
    arrivals[300] = 3
    kpa = KpaAutoscaler(CLUSTER.replica_capacity_rps, scale_to_zero=True)
    run = simulate_closed_loop(kpa, workload(arrivals), CLUSTER, 1, 0, 5)
    first_zero = int(np.flatnonzero(run.billed == 0)[0])
    assert 10 + 60 + 30 <= first_zero <= 10 + 60 + 30 + 2 * kpa.interval_s
    assert run.billed[301] == 1 and run.ready[301 + 10] == 1
    assert run.dropped.sum() == 0
    plain = simulate_closed_loop(
        KpaAutoscaler(CLUSTER.replica_capacity_rps), workload(arrivals), CLUSTER, 1, 0, 5
    )
    assert plain.billed.min() == 1  # without scale to zero it keeps one


def test_thinning_is_seeded_and_keeps_the_chosen_share() -> None:
    trace = load_trace(TRACES_DIR / "nasa_http_jul1995_1min.csv")
    keep = keep_for_mean_rate(trace)
    a = thinned_arrivals(trace, keep)
    b = thinned_arrivals(trace, keep)
    assert np.array_equal(a.arrivals, b.arrivals)
    assert a.arrivals.size == trace.duration_s
    minutes = trace.duration_s / 60
    assert abs(a.arrivals.sum() / minutes - 1.0) < 0.05  # one request per minute on average
    # the rhythm survives: the busiest hour of the day is still far busier than the quietest
    hourly = a.arrivals[: 86400 * 27].reshape(27, 24, 3600).sum(axis=(0, 2))
    assert hourly.max() > 3 * hourly.min()
    other = thinned_arrivals(trace, keep, seed=7)
    assert not np.array_equal(a.arrivals, other.arrivals)


def test_thinning_a_per_second_trace_keeps_its_seconds() -> None:
    trace = Trace("t", np.arange(1000, dtype=np.int64), np.full(1000, 10.0), 1)
    w = thinned_arrivals(trace, 0.1)
    assert w.arrivals.size == 1000 and 800 < w.arrivals.sum() < 1200
    assert keep_for_mean_rate(trace, per_minute=6000) == 1.0  # never more than the trace


def test_zero_comparison_runs_every_policy_on_the_same_arrivals() -> None:
    arrivals = np.zeros(1800)
    arrivals[100:130] = 1
    arrivals[900:905] = 1
    result = run_zero(workload(arrivals), CLUSTER, ScalingPolicy(forecast_model="profile"))
    assert list(result.rows) == ["prewarm-min1", "prewarm-zero", "kpa-zero", "hpa-min1"]
    assert result.rows["prewarm-min1"].zero_share == 0 and result.rows["hpa-min1"].cold.requests == 0
    assert result.rows["prewarm-zero"].zero_share > 0.5
    assert result.rows["prewarm-zero"].cost < result.rows["prewarm-min1"].cost
    assert [name for name, _, _ in result.goals()] == [
        "prewarm-zero >= 40 % cheaper than prewarm-min1",
        "prewarm-zero >= 5x fewer cold-started requests than kpa-zero",
    ]


def test_the_quietest_hour_is_the_hour_of_the_day_with_the_fewest_requests() -> None:
    arrivals = np.zeros(2 * 86400)
    for day in range(2):
        for hour in range(24):
            start = day * 86400 + hour * 3600
            per_hour = 6 if hour == 5 else 120  # hour 5: one minute in ten has a request
            arrivals[start : start + 3600 : 3600 // per_hour] = 1
    quiet = quietest_hour(Workload("w", 0.0, arrivals, 1.0, 1, 1.0))
    assert quiet is not None
    hour, busy, rate = quiet
    assert hour == 5 and busy == 0.1 and rate == 0.1
    assert quietest_hour(Workload("w", 0.0, arrivals[:3600], 1.0, 1, 1.0)) is None
