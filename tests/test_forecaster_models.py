"""Each model on synthetic series with known answers: daily sine, step change, spike, gaps, zeros, short history."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster import MODEL_NAMES, History, make_model

DAY = 86_400.0
STEP = 300.0  # five-minute steps keep the series short
START = 1_700_006_400.0  # a UTC midnight
CHEAP_MODELS = [name for name in MODEL_NAMES if name != "prophet"]


def daily_sine(days: float, mean: float = 100.0, amplitude: float = 50.0) -> np.ndarray:
    t = START + STEP * np.arange(int(days * DAY / STEP))
    return mean + amplitude * np.sin(2 * np.pi * t / DAY)


def truth_after(history: History, steps: int, mean: float = 100.0, amplitude: float = 50.0) -> np.ndarray:
    t = history.end_ts + STEP * np.arange(steps)
    return mean + amplitude * np.sin(2 * np.pi * t / DAY)


def test_seasonal_naive_repeats_yesterday_exactly_on_a_pure_daily_sine() -> None:
    history = History(START, STEP, daily_sine(3))
    forecast = make_model("snaive_day").forecast(history, 12)
    np.testing.assert_allclose(forecast.point, truth_after(history, 12), atol=1e-9)


@pytest.mark.parametrize("name", ["profile", "holt_winters"])
def test_seasonal_models_follow_a_pure_daily_sine(name: str) -> None:
    history = History(START, STEP, daily_sine(5)[:-30])
    forecast = make_model(name).forecast(history, 24)
    error = np.abs(forecast.point - truth_after(history, 24)).mean()
    assert error < 3.0  # of an amplitude of 50: the shape of the next two hours is learned


def test_profile_beats_flat_models_on_a_daily_sine() -> None:
    history = History(START, STEP, daily_sine(5)[:-40])
    truth = truth_after(history, 24)
    profile_error = np.abs(make_model("profile").forecast(history, 24).point - truth).mean()
    ma_error = np.abs(make_model("ma").forecast(history, 24).point - truth).mean()
    assert profile_error < ma_error / 3


@pytest.mark.parametrize("name", ["naive", "ma", "profile"])
def test_level_models_move_to_the_new_level_after_a_step_change(name: str) -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([np.full(500, 20.0), np.full(100, 80.0)]) + rng.normal(0, 1, 600)
    forecast = make_model(name).forecast(History(START, STEP, values), 6)
    assert np.all(np.abs(forecast.point - 80.0) < 6.0)


def test_a_one_off_spike_does_not_poison_the_daily_profile() -> None:
    clean = daily_sine(5)[:-30]
    spiked = clean.copy()
    spiked[400:420] *= 20  # a one-off event two days before the origin
    before = make_model("profile").forecast(History(START, STEP, clean), 24).point
    after = make_model("profile").forecast(History(START, STEP, spiked), 24).point
    assert np.abs(after - before).max() < 0.02 * before.mean()


@pytest.mark.parametrize("name", CHEAP_MODELS)
def test_gaps_still_give_finite_non_negative_forecasts(name: str) -> None:
    values = daily_sine(8)
    values[100:400] = np.nan  # an outage of the metrics pipeline
    values[-5:-2] = np.nan
    forecast = make_model(name).forecast(History(START, STEP, values), 12)
    for series in (forecast.point, forecast.lower, forecast.upper):
        assert np.all(np.isfinite(series)) and np.all(series >= 0)


@pytest.mark.parametrize("name", CHEAP_MODELS)
def test_band_brackets_the_point(name: str) -> None:
    rng = np.random.default_rng(2)
    values = rng.poisson(daily_sine(8)).astype(float)
    forecast = make_model(name).forecast(History(START, STEP, values), 12)
    assert np.all(forecast.lower <= forecast.point) and np.all(forecast.point <= forecast.upper)
    assert np.any(forecast.lower < forecast.upper)


@pytest.mark.parametrize("name", CHEAP_MODELS)
def test_an_idle_service_is_forecast_idle(name: str) -> None:
    forecast = make_model(name).forecast(History(START, STEP, np.zeros(3000)), 12)
    np.testing.assert_array_equal(forecast.point, 0.0)
    np.testing.assert_array_equal(forecast.upper, 0.0)


@pytest.mark.parametrize("name", CHEAP_MODELS)
def test_falling_traffic_is_never_forecast_negative(name: str) -> None:
    rng = np.random.default_rng(3)
    values = np.maximum(0, np.linspace(200, 0, 3000) + rng.normal(0, 15, 3000))
    forecast = make_model(name).forecast(History(START, STEP, values), 48)
    assert np.all(forecast.lower >= 0) and np.all(forecast.point >= 0)


@pytest.mark.parametrize(
    ("name", "expected_model"),
    [("snaive_week", "snaive_day"), ("holt_winters", "ma"), ("snaive_day", "naive")],
)
def test_models_needing_more_history_fall_back_to_simpler_ones(name: str, expected_model: str) -> None:
    history = History(START, STEP, daily_sine(1.5 if name != "snaive_day" else 0.5))
    forecast = make_model(name).forecast(history, 6)
    assert forecast.model == expected_model
    assert forecast.requested_model == name


def test_profile_works_on_a_few_points_without_a_daily_profile() -> None:
    forecast = make_model("profile").forecast(History(START, 1.0, np.array([3.0, 5.0, 4.0])), 5)
    assert forecast.model == "profile"
    assert np.all(np.isfinite(forecast.point)) and np.all((forecast.point > 2) & (forecast.point < 6))


def test_forecast_targets_start_at_the_history_end_on_the_history_step() -> None:
    history = History(START, STEP, daily_sine(1))
    forecast = make_model("ma").forecast(history, 4)
    np.testing.assert_array_equal(forecast.target_ts, history.end_ts + STEP * np.arange(4))
    assert forecast.step_s == STEP and forecast.horizon_s == 4 * STEP


def test_profile_point_is_the_median_on_mostly_idle_bursty_traffic() -> None:
    rng = np.random.default_rng(4)
    values = np.where(rng.random(4000) < 0.8, 0.0, rng.poisson(20, 4000).astype(float))
    forecast = make_model("profile").forecast(History(START, 1.0, values), 30)
    assert np.all(forecast.point < 1.0)  # the mean is about 4; the MAE-optimal forecast is near 0
    assert np.all(forecast.upper > 10.0)


def test_long_one_second_history_is_forecast_from_a_bounded_amount_of_work() -> None:
    # 28 days at 1 s: the model reads only the tail it needs (profile days, calibration span).
    rng = np.random.default_rng(5)
    t = np.arange(28 * 86_400, dtype=np.float64)
    values = rng.poisson(5 + 4 * np.sin(2 * np.pi * t / DAY)).astype(np.float64)
    forecast = make_model("profile").forecast(History(0.0, 1.0, values), 600)
    assert len(forecast) == 600 and np.all(np.isfinite(forecast.point))


def test_history_from_samples_puts_missing_intervals_as_nan() -> None:
    history = History.from_samples([0.0, 60.0, 180.0], [1.0, 2.0, 4.0], 60.0)
    np.testing.assert_array_equal(np.isnan(history.values), [False, False, True, False])
    assert history.end_ts == 240.0


def test_unknown_model_names_are_refused() -> None:
    from forecaster import UnknownModel

    with pytest.raises(UnknownModel):
        make_model("crystal_ball")


@pytest.mark.slow
def test_prophet_follows_a_pure_daily_sine() -> None:
    history = History(START, STEP, daily_sine(4)[:-30])
    forecast = make_model("prophet").forecast(history, 12)
    assert forecast.model == "prophet"
    assert np.abs(forecast.point - truth_after(history, 12)).mean() < 5.0
