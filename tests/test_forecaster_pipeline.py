"""The one forecasting pipeline: history alignment, span, model choice and its cache, fallbacks, calibration."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from forecaster.calibration import MIN_RESIDUALS, Residuals, calibrate, conformal_quantile, residuals_since
from forecaster.pipeline import ForecastPlan, PipelineState, run_pipeline
from forecaster.types import History

DAY_S = 86_400.0
T0 = 1_700_000_000.0 - 1_700_000_000.0 % DAY_S  # midnight UTC


def plan(**fields: object) -> ForecastPlan:
    base: dict[str, object] = {
        "model": "ma", "step_s": 60.0, "history_s": 2 * DAY_S, "lead_s": 40.0, "horizon_s": 60.0,
        "refit_interval_s": 900.0, "candidates": ("naive", "ma", "profile"), "selection_eval_s": 6 * 3600.0,
        "reselect_interval_s": DAY_S,
    }  # fmt: skip
    return ForecastPlan(**{**base, **fields})  # type: ignore[arg-type]


def rates(seconds_since_t0: np.ndarray) -> np.ndarray:
    """A smooth daily rhythm with noise, per bin (any unit)."""
    rng = np.random.default_rng(int(seconds_since_t0.size))
    t = seconds_since_t0
    return 200 + 100 * np.sin(2 * np.pi * t / DAY_S) + rng.normal(0, 5, t.size)


def history_for(p: ForecastPlan, now: float, first_observed: float = T0) -> History:
    """The bins of ``p.window(now)`` with data from ``first_observed`` on (NaN before: a young deployment)."""
    start, end = p.window(now)
    ts = start + p.step_s * np.arange(round((end - start) / p.step_s))
    values = np.where(ts >= first_observed, rates(ts - T0), np.nan)
    return History(start, p.step_s, values)


def test_the_window_ends_at_the_last_complete_bin_aligned_to_the_epoch() -> None:
    p = plan(history_s=3600.0 + 30)  # not a whole number of bins: whole bins are kept
    assert p.window(T0 + 125.0) == (T0 + 120.0 - 3600.0, T0 + 120.0)
    assert p.window(T0 + 120.0) == (T0 + 120.0 - 3600.0, T0 + 120.0)


def test_refits_come_often_while_the_history_is_young() -> None:
    p = plan(step_s=60, refit_interval_s=900, refit_history_fraction=0.1)
    assert p.refit_in_s(0) == 60  # never more often than one forecast step
    assert p.refit_in_s(3000) == 300  # 10 % of the history
    assert p.refit_in_s(86400) == 900  # never less often than the refit interval
    assert p.due(1000.0, None, 0.0)
    assert not p.due(1000.0 + 899, 1000.0, 86400) and p.due(1000.0 + 900, 1000.0, 86400)


def test_the_forecast_reaches_the_next_refit_plus_lead_and_horizon_from_the_last_complete_bin() -> None:
    p = plan()
    now = T0 + 3 * DAY_S + 30.0
    result, _ = run_pipeline(history_for(p, now), p, PipelineState(), now)
    assert result is not None
    forecast = result.forecast
    assert forecast.target_ts[0] == p.window(now)[1]  # the last complete bin's end, up to a step before now
    assert forecast.target_ts[-1] + forecast.step_s >= now + p.refit_interval_s + p.lead_s + p.horizon_s
    assert result.history_s == p.history_s


def test_a_young_deployment_starts_at_its_first_observation() -> None:
    p = plan()
    now = T0 + 3 * DAY_S
    result, _ = run_pipeline(history_for(p, now, first_observed=now - 1800), p, PipelineState(), now)
    assert result is not None
    assert result.history.start_ts == now - 1800 and result.history_s == 1800
    # young: the next refit comes after 10 % of the history, so the span is shorter (in whole steps)
    assert result.forecast.horizon_s == pytest.approx(math.ceil((180 + 100 + 60) / 60) * 60)


def test_no_observation_yet_gives_no_forecast() -> None:
    p = plan()
    now = T0 + DAY_S
    empty = History(p.window(now)[0], 60.0, np.full(round(p.history_s / 60), np.nan))
    assert run_pipeline(empty, p, PipelineState(), now) == (None, PipelineState())


def test_a_history_that_is_not_the_plans_window_is_refused() -> None:
    p = plan()
    now = T0 + DAY_S
    shifted = dataclasses.replace(history_for(p, now), start_ts=p.window(now)[0] + 30)
    with pytest.raises(ValueError, match=r"plan\.window"):
        run_pipeline(shifted, p, PipelineState(), now)


def test_an_unknown_model_falls_back_to_profile_with_a_note() -> None:
    p = plan(model="no-such-model")
    now = T0 + 3 * DAY_S
    result, _ = run_pipeline(history_for(p, now), p, PipelineState(), now)
    assert result is not None and result.forecast.model == "profile"
    assert any("unknown model 'no-such-model'" in note for note in result.notes)


def test_auto_selection_is_reused_until_it_is_older_than_the_reselect_interval() -> None:
    p = plan(model="auto", reselect_interval_s=6 * 3600.0, history_s=7 * DAY_S, selection_eval_s=DAY_S)
    now = T0 + 8 * DAY_S
    first, state = run_pipeline(history_for(p, now), p, PipelineState(), now)
    assert first is not None and first.selection is not None and first.selection.scored
    later = now + 3 * 3600
    second, state = run_pipeline(history_for(p, later), p, state, later)
    assert second is not None and second.selection is first.selection  # cached: no new backtest
    much_later = now + 6 * 3600
    third, _ = run_pipeline(history_for(p, much_later), p, state, much_later)
    assert third is not None and third.selection is not first.selection
    assert third.selection is not None and third.selection.model_name == "profile"  # knows the daily shape


def test_an_unscored_choice_is_not_cached() -> None:
    p = plan(model="auto")
    now = T0 + 3 * DAY_S
    young = history_for(p, now, first_observed=now - 180)  # too short to score any model
    result, state = run_pipeline(young, p, PipelineState(), now)
    assert result is not None and result.selection is not None and not result.selection.scored
    later = now + 60
    again, _ = run_pipeline(history_for(p, later, first_observed=now - 180), p, state, later)
    assert again is not None and again.selection is not result.selection


def test_the_band_is_calibrated_from_the_assessment_then_from_its_own_forecasts() -> None:
    p = plan(model="ma")
    now = T0 + 3 * DAY_S
    first, state = run_pipeline(history_for(p, now), p, PipelineState(), now)
    assert first is not None and first.calibration.applied
    assert state.residuals is not None and state.residuals.target_ts.max() < now
    later = now + 900
    second, state = run_pipeline(history_for(p, later), p, state, later)
    assert second is not None
    assert state.residuals is not None
    # the first forecast's targets observed since (15 one-minute bins) joined the memory
    own = state.residuals.between(now, later)
    assert len(own) == 15
    assert state.residuals.target_ts.min() >= later - p.selection_eval_s  # older ones are forgotten


def test_calibration_scales_each_half_of_the_band_by_the_conformal_quantile_of_its_scores() -> None:
    p = plan(model="ma")
    now = T0 + 3 * DAY_S
    result, _ = run_pipeline(history_for(p, now), p, PipelineState(), now)
    assert result is not None
    raw = dataclasses.replace(result.forecast, requested_model="ma")
    memory = Residuals("ma", np.arange(100.0), np.full(100, 2.0), np.full(100, 0.5))
    calibrated, calibration = calibrate(raw, memory, ref=1.0)
    assert calibration.applied and calibration.upper_scale == 2.0 and calibration.lower_scale == 0.5
    np.testing.assert_allclose(calibrated.upper - raw.point, 2.0 * (raw.upper - raw.point))
    np.testing.assert_allclose(raw.point - calibrated.lower, 0.5 * (raw.point - raw.lower))
    assert np.all(calibrated.point == raw.point)
    other_model = Residuals("naive", memory.target_ts, memory.upper, memory.lower)
    assert calibrate(raw, other_model, ref=1.0)[0] is raw
    too_few = memory.between(0, MIN_RESIDUALS - 1)
    assert calibrate(raw, too_few, ref=1.0)[0] is raw


def test_conformal_quantiles_are_the_textbook_order_statistics() -> None:
    values = np.arange(1.0, 20.0)  # 19 values: (n + 1) q = 18 for q = 0.9, 2 for q = 0.1
    assert conformal_quantile(values, 0.9) == 18.0
    assert conformal_quantile(values, 0.1) == 2.0


def test_only_targets_observed_before_the_history_end_become_residuals() -> None:
    p = plan()
    now = T0 + 3 * DAY_S
    result, _ = run_pipeline(history_for(p, now), p, PipelineState(), now)
    assert result is not None
    later_history = history_for(p, now + 300)
    residuals = residuals_since(result.forecast, later_history, ref=200.0, since_ts=now - 60)
    assert residuals.target_ts.size == 5  # the five bins observed since now (the forecast starts at now)
    assert residuals.target_ts.max() < later_history.end_ts


def test_a_choice_made_before_a_candidate_had_its_history_is_redone_as_the_history_grows() -> None:
    p = plan(model="auto", history_s=7 * DAY_S, selection_eval_s=DAY_S, reselect_interval_s=DAY_S)
    now = T0 + 8 * DAY_S
    born = now - 1.5 * DAY_S  # the daily profile needs two days
    first, state = run_pipeline(history_for(p, now, born), p, PipelineState(), now)
    assert first is not None and first.selection is not None and first.selection.provisional
    soon = now + 6 * 3600  # 1.75 days of history: not yet grown by half
    second, state = run_pipeline(history_for(p, soon, born), p, state, soon)
    assert second is not None and second.selection is first.selection
    grown = now + 0.75 * DAY_S  # 2.25 days: redone, and the daily profile now wins
    third, _ = run_pipeline(history_for(p, grown, born), p, state, grown)
    assert third is not None and third.selection is not first.selection
    assert third.selection is not None and third.selection.model_name == "profile"


def test_a_fixed_model_keeps_its_own_residuals_while_its_history_is_too_young_to_score() -> None:
    p = plan(model="ma")
    now = T0 + 3 * DAY_S
    born = now - 180  # too short to score: the assessment is unscored
    first, state = run_pipeline(history_for(p, now, born), p, PipelineState(), now)
    assert first is not None and first.selection is not None and first.selection.model_name == "ma"
    later = now + 120
    second, state = run_pipeline(history_for(p, later, born), p, state, later)
    assert second is not None and state.residuals is not None and state.residuals.model == "ma"
    assert len(state.residuals) > 0  # the first forecast's observed targets
