"""The rate oracle's frontier between time at zero and cold-started requests (controller/simulation/zero_bound.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.simulation.baselines import KpaAutoscaler
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import simulate_closed_loop
from controller.simulation.metrics import ColdStarts, cold_starts
from controller.simulation.sparse import period_rates
from controller.simulation.workload import Workload
from controller.simulation.zero_bound import reactive_zero_cycle, zero_frontier
from controller.simulation.zero_run import ZeroComparison, ZeroRow, bound_check
from prewarm.traces import Trace


def monte_carlo_cycle(
    rate: float, startup_s: float, grace_s: float, wake_delay_s: float, horizon_s: float, seed: int
) -> tuple[float, float]:
    """Reactive zero played out on Poisson arrivals in continuous time: (share at zero, cold starts per second)."""
    rng = np.random.default_rng(seed)
    t, zero_s, cold = 0.0, 0.0, 0
    arrival = rng.exponential(1 / rate)
    while arrival < horizon_s:
        zero_s += arrival - t + wake_delay_s  # at zero until the request, then until the replica starts
        cold += 1
        ready = arrival + wake_delay_s + startup_s
        last = arrival
        arrival = last + rng.exponential(1 / rate)
        while arrival < max(ready, last + grace_s):
            cold += arrival < ready
            last = arrival
            arrival = last + rng.exponential(1 / rate)
        t = max(ready, last + grace_s)  # down; the next request (already drawn) is later: memoryless
    return zero_s / t, cold / t


def test_no_traffic_is_always_at_zero() -> None:
    cycle = reactive_zero_cycle(0.0, 22.0, 30.0)
    assert (cycle.zero_share, cycle.cold_per_s) == (1.0, 0.0)


def test_closed_form_when_the_grace_outlasts_the_startup() -> None:
    lam, startup, grace = 1 / 60, 22.0, 30.0
    cycle = reactive_zero_cycle(lam, startup, grace)
    assert cycle.zero_share == pytest.approx(math.exp(-lam * grace))
    assert cycle.cold_per_s == pytest.approx(lam * (1 + lam * startup) * math.exp(-lam * grace))


@pytest.mark.parametrize(
    ("rate", "startup", "grace", "delay"),
    [(1 / 60, 22.0, 30.0, 0.0), (1 / 20, 22.0, 30.0, 1.0), (1 / 30, 40.0, 10.0, 2.0), (0.2, 22.0, 5.0, 0.0)],
)
def test_cycle_matches_a_monte_carlo_of_reactive_zero(
    rate: float, startup: float, grace: float, delay: float
) -> None:
    expected = reactive_zero_cycle(rate, startup, grace, delay)
    zero, cold = monte_carlo_cycle(rate, startup, grace, delay, 3_000_000.0, seed=7)
    assert zero == pytest.approx(expected.zero_share, rel=0.02)
    assert cold == pytest.approx(expected.cold_per_s, rel=0.02)


def test_frontier_goes_to_zero_in_the_quietest_periods_first() -> None:
    rates = [0.02, 0.0, 0.01]
    frontier = zero_frontier(rates, 3600.0, 22.0, 30.0)
    quiet = reactive_zero_cycle(0.01, 22.0, 30.0)
    # the idle period first: a full period at zero, no cold start
    assert frontier.zero_s[1] == pytest.approx(3600.0)
    assert frontier.cold[1] == 0.0
    assert frontier.cold[2] == pytest.approx(quiet.cold_per_s * 3600.0)
    assert frontier.zero_s[2] == pytest.approx(3600.0 * (1 + quiet.zero_share))


def test_min_cold_interpolates_and_says_when_a_share_is_out_of_reach() -> None:
    frontier = zero_frontier([0.0, 0.01], 3600.0, 22.0, 30.0)
    quiet = reactive_zero_cycle(0.01, 22.0, 30.0)
    assert frontier.min_cold(0.25) == 0.0  # half of the idle period
    share = (1 + quiet.zero_share / 2) / 2  # all of the idle period, half of the other's time at zero
    assert frontier.min_cold(share) == pytest.approx(quiet.cold_per_s * 3600.0 / 2)
    assert frontier.max_zero_share(quiet.cold_per_s * 3600.0 / 2) == pytest.approx(share)
    assert frontier.min_cold(0.99) is None


def test_cold_starts_per_second_at_zero_rise_with_the_rate() -> None:
    per_zero = [
        c.cold_per_s / c.zero_share
        for c in (reactive_zero_cycle(r, 22.0, 30.0, 1.0) for r in (0.001, 0.01, 0.1))
    ]
    assert per_zero == sorted(per_zero)


def test_period_rates_are_the_thinned_rate_of_each_whole_period() -> None:
    trace = Trace("t", np.arange(5) * 60, np.array([60.0, 120.0, 0.0, 30.0, 999.0]), 60)
    rates, period = period_rates(trace, 0.5, 240, period_s=120)
    assert period == 120
    np.testing.assert_allclose(rates, [0.5 * 180 / 120, 0.5 * 30 / 120])
    # shorter than a period: one period of its own length
    short, whole = period_rates(trace, 1.0, 120, period_s=3600)
    assert whole == 120
    np.testing.assert_allclose(short, [180 / 120])


def comparison(min1_hours: float, zero_share: float, kpa_cold: float) -> ZeroComparison:
    """A two-hour comparison with only the figures the bound check reads."""

    def row(name: str, hours: float, share: float, cold: float) -> ZeroRow:
        return ZeroRow(name, hours, hours * 0.1, ColdStarts(cold, None, None, None), 0, share, 0, 0.0)

    work = Workload("w", 0.0, np.zeros(7200), 1.0, 1, 1.0)
    rows = {
        "prewarm-min1": row("prewarm-min1", min1_hours, 0.0, 0.0),
        "prewarm-zero": row("prewarm-zero", 2.0 * (1 - zero_share), zero_share, 3.0),
        "kpa-zero": row("kpa-zero", 1.0, 0.5, kpa_cold),
    }
    return ZeroComparison(work, rows, {})


def test_the_goals_are_reachable_when_a_quiet_hour_gives_the_time_at_zero() -> None:
    frontier = zero_frontier([0.0, 0.05], 3600.0, 22.0, 30.0)  # one idle hour, one busy
    check = bound_check(comparison(2.0, 0.25, kpa_cold=100.0), frontier, 3600)
    assert check.zero_share_needed == pytest.approx(0.4)  # 40 % of min 1's two replica-hours
    assert check.cold_at_goal == 0.0 and check.cold_limit == 20.0
    assert check.reachable is True
    assert check.cold_at_ours == 0.0  # prewarm-zero's 25 % fits in the idle hour
    assert "both goals together: reachable" in "\n".join(check.lines())


def test_the_goals_are_out_of_reach_when_every_hour_is_busy() -> None:
    frontier = zero_frontier([0.01, 0.01], 3600.0, 22.0, 30.0)  # 0.6 requests/min all the time
    check = bound_check(comparison(2.0, 0.25, kpa_cold=100.0), frontier, 3600)
    assert check.cold_at_goal is not None and check.cold_at_goal > 20.0
    assert check.reachable is False
    assert "NOT reachable" in "\n".join(check.lines())
    out_of_reach = bound_check(
        comparison(2.0, 0.25, kpa_cold=100.0), zero_frontier([1.0, 1.0], 3600.0, 22.0, 30.0), 3600
    )
    assert out_of_reach.cold_at_goal is None and out_of_reach.reachable is False


def test_the_cycle_formula_predicts_kpa_zero_in_the_simulator() -> None:
    """The frontier's premise, checked on the engine: reactive zero on stationary Poisson arrivals (Knative's KPA,
    down after its 60 s window and 30 s grace) spends the predicted share at zero and pays the predicted cold starts."""
    rate, hours = 1 / 60, 24
    arrivals = np.random.default_rng(3).poisson(rate, hours * 3600).astype(float)
    cluster = ClusterModel()
    kpa = KpaAutoscaler(cluster.replica_capacity_rps, scale_to_zero=True)
    run = simulate_closed_loop(kpa, Workload("p", 0.0, arrivals, 1.0, 1, 1.0), cluster, 1, 0, 3)
    model = reactive_zero_cycle(rate, cluster.startup_s, kpa.stable_window_s + kpa.scale_to_zero_grace_s)
    assert float(np.mean(run.billed <= 0)) == pytest.approx(model.zero_share, rel=0.1)
    cold = cold_starts(run.ready, arrivals).requests
    assert cold == pytest.approx(model.cold_per_s * arrivals.size, rel=0.1)
