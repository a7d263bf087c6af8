"""The reference-point scripts behind the README's "why the goal is out of reach" figures compute what they say."""

from __future__ import annotations

import numpy as np

from benchmarks.forecast_bounds import HALFLIVES_MIN, causal_inputs
from benchmarks.simulate_bounds import idealised_outcome
from forecaster.types import History


def test_idealised_outcome_counts_cost_short_minutes_and_seconds_over() -> None:
    capacity = 1000.0
    known = np.array([900.0, 2500.0, 0.0])  # rates known at the end of minutes 0, 1 (and 2, unused)
    next_minutes = np.full((2, 60), 500.0)
    next_minutes[0, 10] = 1500.0  # minute 1 gets ceil(900 x 1 / 1000) = 1 replica: this second is over
    next_minutes[1, :] = 2900.0  # minute 2 gets ceil(2500 / 1000) = 3 replicas: never over
    cost, short, seconds_over = idealised_outcome(known, 1.0, next_minutes, capacity, oracle_minutes=2.0)
    assert cost == (1 + 3) / 2.0
    assert short == 0.5
    assert seconds_over == 1 / 120
    cost, short, seconds_over = idealised_outcome(known, 2.0, next_minutes, capacity, oracle_minutes=2.0)
    assert (cost, short, seconds_over) == ((2 + 5) / 2.0, 0.0, 0.0)


def test_causal_inputs_of_a_constant_history_are_that_constant() -> None:
    history = History(0.0, 60.0, np.full(3 * 1440, 50.0))
    rows = causal_inputs(history, 10)
    levels = len(HALFLIVES_MIN)
    assert rows.shape == (10, 2 * levels + 5)
    np.testing.assert_allclose(rows[:, :levels], 50.0)  # deseasonalised level x flat profile
    np.testing.assert_allclose(rows[:, levels], 1.0)  # the profile
    np.testing.assert_allclose(rows[:, levels + 1 : -1], 50.0)  # raw levels, last value, a day before


def test_causal_inputs_fall_back_to_the_last_value_without_a_week_of_history() -> None:
    values = np.full(3 * 1440, 50.0)
    values[-1] = 80.0
    rows = causal_inputs(History(0.0, 60.0, values), 10)
    assert rows[:, -4].tolist() == [80.0] * 10  # the last value
    assert rows[:, -3].tolist() == [50.0] * 10  # a day before: the centred mean of the constant
    # a week before is not in the history: the last value stands in
    assert rows[:, -2].tolist() == [80.0] * 10
    np.testing.assert_allclose(rows[:, -1], 1.0)  # intercept
