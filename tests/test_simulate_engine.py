"""Simulator: cluster accounting (cost, startup, queue, latency) and the no-peeking guarantee."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from controller.policy import ScalingPolicy
from controller.simulation.cluster import DEFAULT_PREWARM_S, DEFAULT_SCHEDULING_DELAY_S, ClusterModel, serve
from controller.simulation.engine import ClusterView, simulate_closed_loop, simulate_schedule
from controller.simulation.metrics import summarise
from controller.simulation.prewarm_policy import PrewarmAutoscaler
from controller.simulation.workload import Workload, per_second_arrivals
from prewarm.cli import main
from prewarm.traces import Trace

CLUSTER = ClusterModel(
    replica_capacity_rps=100.0, prewarm_s=5.0, scheduling_delay_s=5.0, price_per_replica_hour=0.5
)


def workload(arrivals: np.ndarray) -> Workload:
    return Workload("hand", 1_000_000.0, arrivals.astype(float), 1.0, 1, float(arrivals.max()))


@dataclass
class Script:
    """An autoscaler that asks for given counts at given seconds."""

    plan: dict[int, int]
    name: str = "script"
    interval_s: int = 1

    def desired(self, view: ClusterView) -> int:
        return self.plan.get(view.t, view.current)


def test_cost_is_billed_from_start_to_stop_exactly() -> None:
    # 2 replicas for 3600 s; at 600 s ask for 4 (billed from 600), at 2400 s back to 1.
    run = simulate_closed_loop(Script({600: 4, 2400: 1}), workload(np.full(3600, 50.0)), CLUSTER, 2, 1, 10)
    expected_replica_s = 600 * 2 + (2400 - 600) * 4 + (3600 - 2400) * 1
    result = summarise(run, np.full(3600, 50.0), CLUSTER, [])
    assert result.cost_replica_hours == pytest.approx(expected_replica_s / 3600)
    assert result.cost == pytest.approx(expected_replica_s / 3600 * 0.5)
    assert result.actions == 2


def test_new_replicas_are_ready_after_the_startup_time() -> None:
    run = simulate_closed_loop(Script({100: 3}), workload(np.zeros(200)), CLUSTER, 1, 1, 10)
    assert run.billed[100] == 3 and run.ready[109] == 1 and run.ready[110] == 3


def test_scale_down_removes_starting_replicas_first() -> None:
    run = simulate_closed_loop(Script({100: 3, 103: 2}), workload(np.zeros(200)), CLUSTER, 1, 1, 10)
    assert run.billed[103] == 2 and run.ready[103] == 1 and run.ready[110] == 2


def test_queue_absorbs_excess_and_drains() -> None:
    out = serve(np.array([150.0, 150.0, 0.0, 0.0]), np.full(4, 100.0), 0.0, np.full(4, 1e9))
    assert out.served.tolist() == [100, 100, 100, 0]
    assert out.queue.tolist() == [50, 100, 0, 0]


def test_requests_beyond_the_queue_bound_are_dropped() -> None:
    out = serve(np.array([300.0]), np.array([100.0]), 0.0, np.array([50.0]))
    assert out.dropped.tolist() == [150] and out.queue.tolist() == [50]


def test_latency_meets_the_slo_exactly_at_capacity() -> None:
    p95 = CLUSTER.p95_ms(
        np.array([100.0, 50.0, 100.0]), np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0, 10.0])
    )
    assert p95[0] == pytest.approx(50.0)
    assert p95[1] < 50.0 < p95[2]


def test_violations_count_seconds_over_capacity() -> None:
    arrivals = np.full(100, 50.0)
    arrivals[10:15] = 150.0  # one replica of 100 rps: 5 s over, then the queue drains
    run = simulate_schedule("one", workload(arrivals), CLUSTER, np.ones(100), np.ones(100), 0)
    result = summarise(run, arrivals, CLUSTER, [])
    assert result.slo_violation_s == int(np.count_nonzero(run.queue > 0)) and result.slo_violation_s >= 5


def test_coarse_traces_are_spread_over_seconds_with_a_fixed_seed() -> None:
    trace = Trace("t", np.array([0, 60]), np.array([600.0, 1200.0]), 60)
    a = per_second_arrivals(trace, 2.0)
    assert a.seconds == 120 and a.arrivals.std() > 0
    assert abs(a.arrivals[:60].mean() - 20) < 3 and abs(a.arrivals[60:].mean() - 40) < 4
    assert np.array_equal(a.arrivals, per_second_arrivals(trace, 2.0).arrivals)


def test_prewarm_decisions_do_not_depend_on_the_future() -> None:
    rng = np.random.default_rng(0)
    n = 4 * 3600
    base = 200 + 150 * np.sin(np.arange(n) / 1800.0) + rng.poisson(20, n)
    changed = base.astype(np.float64)
    cut = 2 * 3600
    changed[cut:] *= 3.0
    policy = ScalingPolicy(
        forecast_model="ma", forecast_refit_interval_s=600, replica_capacity_rps=100.0, max_replicas=50
    )
    runs = [
        simulate_closed_loop(PrewarmAutoscaler(policy), workload(x), CLUSTER, 3, 1, 50)
        for x in (base, changed)
    ]
    assert np.array_equal(runs[0].billed[:cut], runs[1].billed[:cut])
    assert not np.array_equal(runs[0].billed, runs[1].billed)


def test_prewarm_refits_often_on_a_young_history_and_says_how_long_it_was() -> None:
    policy = ScalingPolicy(
        forecast_model="ma", forecast_refit_interval_s=900, replica_capacity_rps=100.0, max_replicas=50
    )
    autoscaler = PrewarmAutoscaler(policy)
    simulate_closed_loop(autoscaler, workload(np.full(3600, 150.0)), CLUSTER, 2, 1, 50)
    # 60 s steps while under 600 s of history, then 10 % of it: far more than the one refit of the hourly cadence
    assert autoscaler.refits >= 20
    assert autoscaler.forecast is not None and autoscaler.forecast.history_s is not None
    assert 3000 <= autoscaler.forecast.history_s <= 3600


def test_prewarm_ignores_forecasts_until_the_minimum_history() -> None:
    policy = ScalingPolicy(
        forecast_model="ma", forecast_min_history_s=1200, replica_capacity_rps=100.0, max_replicas=50
    )
    autoscaler = PrewarmAutoscaler(policy)
    run = simulate_closed_loop(autoscaler, workload(np.full(1800, 150.0)), CLUSTER, 2, 1, 50)
    used_at = [t for t, _ in autoscaler.forecast_log]
    assert used_at and min(used_at) >= 1200 and run.ready[-1] >= 2


def test_cli_prints_json_for_every_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    rates = np.concatenate([np.full(40, 20), np.full(20, 80), np.full(40, 20)]) + rng.integers(0, 5, 100)
    csv = tmp_path / "t.csv"
    csv.write_text("timestamp,requests\n" + "\n".join(f"{60 * i},{60 * r}" for i, r in enumerate(rates)))
    code = main(["simulate", "--trace", str(csv), "--scale", "10", "--json", "--report", str(tmp_path / "r")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["policies"]) == {"static-peak", "hpa", "kpa", "prewarm", "hpa-tuned", "oracle"}
    assert set(out["policies"]["prewarm"]) >= {
        "cost_replica_hours",
        "cost",
        "slo_violation_s",
        "violation_share",
        "dropped",
        "mean_utilisation",
        "actions",
        "surge_lead_s",
    }
    # default startup: the measured pre-warm time plus the Kubernetes-like scheduling delay, in whole seconds
    assert out["cluster"]["startup_s"] == math.ceil(DEFAULT_PREWARM_S + DEFAULT_SCHEDULING_DELAY_S)
    assert out["policies"]["oracle"]["slo_violation_s"] == 0
    assert (tmp_path / "r" / "report.md").exists() and (tmp_path / "r" / "plot.png").stat().st_size > 0


def test_prewarm_logs_the_forecast_band_it_could_use_for_the_plot() -> None:
    policy = ScalingPolicy(
        forecast_model="ma", forecast_min_history_s=1200, replica_capacity_rps=100.0, max_replicas=50
    )
    autoscaler = PrewarmAutoscaler(policy)
    rng = np.random.default_rng(3)
    simulate_closed_loop(autoscaler, workload(rng.poisson(150, 2400)), CLUSTER, 2, 1, 50)
    band = np.array(autoscaler.band_log)
    assert band.size and band[:, 0].min() >= 1200  # not before decide() may use a forecast
    lower, point, upper = band[:, 1], band[:, 2], band[:, 3]
    assert np.all(lower <= point) and np.all(point <= upper) and np.all(lower < upper)
    assert 100 < np.median(point) < 200  # the moving average of a ~150 rps load


def test_the_plot_zooms_on_the_day_with_the_highest_peak() -> None:
    from controller.simulation.report import zoom_window

    days = np.ones(3 * 86_400)
    days[86_400 + 5000] = 50.0
    assert zoom_window(days) == (86_400, 2 * 86_400)
    assert zoom_window(np.ones(3600)) == (0, 3600)


def test_violating_seconds_are_listed_as_ranges() -> None:
    from controller.simulation.report import second_ranges

    assert second_ranges(np.array([3, 4, 5, 9, 11, 12])) == "3-5, 9, 11-12"
    assert second_ranges(np.array([], dtype=np.int64)) == "none"
    assert second_ranges(np.array([1, 3, 5]), limit=2) == "1, 3 and 1 more ranges"
