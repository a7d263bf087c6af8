"""The demo's pure parts: replay planning, per-second rates, billing from replica events, surges, violations."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from controller.simulation.metrics import SurgeRule, find_surges, surge_lead_s
from prewarm.demo import live
from prewarm.demo.compare import slip_lines
from prewarm.demo.replay import per_second, plan_days
from prewarm.demo.run import DemoOptions, ReplayOutcome
from prewarm.traces import Trace


def _minute_trace(days: int) -> Trace:
    minutes = days * 1440
    requests = 60.0 + 60.0 * (np.arange(minutes) % 1440 >= 720)  # 1 rps at night, 2 rps by day
    return Trace("t", np.arange(minutes, dtype=np.int64) * 60, requests, 60)


def test_plan_days_scales_the_live_peak_and_takes_the_days_before_as_history() -> None:
    plan = plan_days(_minute_trace(4), live_day=3, history_days=2, compression=360, peak_rps=100)
    assert plan.scale == pytest.approx(50.0)  # 2 rps peak -> 100 rps
    assert plan.live_rates_rps().max() == pytest.approx(100.0)
    assert plan.history_intervals == 2 * 1440 and plan.live_intervals == 1440
    assert plan.live_replay_s == pytest.approx(240.0)
    assert plan.history_rates_rps()[0] == pytest.approx(50.0)


def test_plan_days_refuses_a_day_without_enough_history_or_outside_the_trace() -> None:
    with pytest.raises(ValueError, match="history"):
        plan_days(_minute_trace(4), live_day=1, history_days=2, compression=360, peak_rps=10)
    with pytest.raises(ValueError, match="whole days"):
        plan_days(_minute_trace(4), live_day=4, history_days=2, compression=360, peak_rps=10)


def test_per_second_keeps_every_request_when_intervals_are_shorter_than_a_second() -> None:
    rates = np.array([6.0] * 6 + [12.0] * 6)  # twelve intervals of 1/6 s
    seconds = per_second(rates, 1 / 6)
    assert seconds.tolist() == pytest.approx([6.0, 12.0])


def test_per_second_spreads_long_intervals() -> None:
    assert per_second(np.array([3.0, 5.0]), 2.0).tolist() == pytest.approx([3.0, 3.0, 5.0, 5.0])


def test_violating_seconds_counts_slow_and_failed_seconds() -> None:
    intended = np.array([0.1, 0.5, 1.1, 1.6, 2.2, 2.4])
    latency = np.array([0.01, 0.02, 0.2, 0.3, 0.01, np.nan])
    status = np.array([200, 200, 200, 200, 200, 0])
    assert live.violating_seconds(intended, latency, status, 3, 50.0).tolist() == [False, True, True]


def test_surge_leads_negative_when_capacity_was_there_first() -> None:
    # the simulator's surge functions, as the demo uses them (with a rule for seconds-long windows)
    rule = SurgeRule(rise_window_s=5, separation_s=30, lookback_s=40, smoothing_s=1, sample_step_s=1)
    demand = np.array([10.0] * 20 + [100.0] * 20)
    early = np.where(np.arange(40) >= 15, 120.0, 20.0)  # capacity 5 s before the surge
    late = np.where(np.arange(40) >= 24, 120.0, 20.0)  # 4 s after
    [surge] = find_surges(demand, rule)
    assert (surge.t, surge.level_rps) == (20, 100.0)
    assert surge_lead_s(early, 1.0, surge, rule) == -5.0
    assert surge_lead_s(late, 1.0, surge, rule) == 4.0
    assert surge_lead_s(np.full(40, 20.0), 1.0, surge, rule) is None


def test_a_compressed_surge_rule_keeps_its_meaning_in_trace_time() -> None:
    rule = SurgeRule().compressed(360)
    assert (rule.rise_window_s, rule.separation_s, rule.lookback_s) == (2, 5, 10)
    assert rule.smoothing_s >= 1 and rule.sample_step_s >= 1


def _outcome(latency_ms: float, send_slip_s: float) -> ReplayOutcome:
    latency = np.full(1000, latency_ms / 1000.0)
    return ReplayOutcome(
        started_at=0.0,
        seconds=10,
        intended_s=np.arange(1000) / 100.0,
        latency_s=latency,
        status=np.full(1000, 200),
        send_slip_s=np.full(1000, send_slip_s),
        decision_lag=({0.1: 100.0, float("inf"): 100.0}, 100.0),
    )


def _slip(outcome: ReplayOutcome) -> list[str]:
    options = DemoOptions(trace=Path("unused"))
    return slip_lines(outcome, SimpleNamespace(interval_replay_s=1 / 6), options)  # type: ignore[arg-type]


def test_a_faithful_replay_prints_its_timing_without_a_warning() -> None:
    lines = _slip(_outcome(latency_ms=21.0, send_slip_s=0.002))
    assert lines[0].startswith("Replay timing") and lines[1].startswith("Replica speed")
    assert not any(line.startswith("WARNING") for line in lines)


def test_replicas_slower_than_their_service_time_are_reported_as_a_busy_machine() -> None:
    lines = _slip(_outcome(latency_ms=45.0, send_slip_s=0.002))
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "slower than their service time" in warnings[0]


def test_a_late_load_generator_is_reported() -> None:
    lines = _slip(_outcome(latency_ms=21.0, send_slip_s=0.5))
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "the load generator" in warnings[0]


def test_the_simulated_replay_does_not_depend_on_the_sub_second_phase_of_its_start() -> None:
    """The live replay starts at any fraction of a second; the store's samples and the forecast's bins sit on whole
    seconds. Started at x.6 s the simulator once put each second's arrivals in the bin before and simulated the demo
    day at 19.8 replica-minutes with 1.7 % violating seconds instead of 16.3 and none. Now its seconds start on the
    nearest whole second."""
    from controller.simulation.workload import Workload
    from prewarm.demo.compare import simulate
    from prewarm.demo.run import demo_plan
    from prewarm.traces import TRACES_DIR

    options = DemoOptions(trace=TRACES_DIR / "nasa_http_jul1995_1min.csv")
    plan = demo_plan(options)
    start = 1_796_097_514.0
    whole, fractional = simulate(plan, options, 0.5, start + 1), simulate(plan, options, 0.5, start + 0.6)
    assert fractional.replica_minutes == whole.replica_minutes
    assert fractional.violation_share == whole.violation_share
    assert Workload("w", start + 0.6, np.zeros(3), 1.0, 1, 1.0).start_ts == start + 1
