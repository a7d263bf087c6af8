"""The rolling-origin backtest: no look-ahead, correct scores, selection, and the command's output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from forecaster import DEFAULT_QUANTILES, Forecast, History, backtest, make_model, select_model
from forecaster.backtest import origin_indices, warmup_indices
from forecaster.bands import finish


@dataclass
class SpyModel:
    """Records every history it is shown; forecasts the true future it was given at construction."""

    truth: np.ndarray
    name: str = "spy"
    seen: list[History] = field(default_factory=list)

    def forecast(
        self, history: History, horizon_steps: int, quantiles: tuple[float, float] = DEFAULT_QUANTILES
    ) -> Forecast:
        self.seen.append(history)
        n = len(history.values)
        point = self.truth[n : n + horizon_steps]
        return finish(history, point, point - 1, point + 1, self.name, quantiles)


def series(n: int = 2000) -> History:
    rng = np.random.default_rng(0)
    return History(1_000_000.0, 60.0, rng.poisson(30, n).astype(float))


def test_models_never_see_data_at_or_after_the_origin() -> None:
    history = series()
    spy = SpyModel(history.values)
    result = backtest(history, [spy], horizon_s=600, every_s=3600, eval_s=86_400, calibration_s=6 * 3600)
    scored = origin_indices(len(history.values), 60.0, 10, 3600, 86_400)
    warmup = warmup_indices(int(scored[0]), 60.0, 3600, 6 * 3600)
    assert result.origins == len(scored) and result.calibration_origins == len(warmup) == 6
    origins = np.concatenate([warmup, scored])
    assert len(spy.seen) == len(origins)
    for seen, origin in zip(spy.seen, origins, strict=True):
        assert len(seen.values) == origin
        assert seen.end_ts == history.start_ts + origin * 60.0
        np.testing.assert_array_equal(seen.values, history.values[:origin])


def test_origins_are_every_e_seconds_within_the_last_w_seconds() -> None:
    # The issue's NASA setting: H = 600 s, E = 3600 s, W = 7 days at 1-minute steps gives 168 origins.
    n = 30 * 24 * 60
    origins = origin_indices(n, 60.0, 10, 3600, 7 * 86_400)
    assert len(origins) == 168
    assert origins[0] == n - 7 * 24 * 60 and np.all(np.diff(origins) == 60)
    assert origins[-1] + 10 <= n


def test_a_model_that_knows_the_future_scores_zero_error_and_full_coverage() -> None:
    history = series()
    result = backtest(history, [SpyModel(history.values)], horizon_s=600, every_s=3600, eval_s=86_400)
    score = result.scores["spy"]
    assert score.mae == 0.0 and score.smape == 0.0 and score.coverage == 1.0
    # its own band (point +- 1) pays the pinball loss of being 1 too high; calibration shrinks it towards the point
    assert score.pinball_upper_own == pytest.approx((1 - DEFAULT_QUANTILES[1]) * 1.0)
    assert score.pinball_upper < 0.2 * score.pinball_upper_own


@dataclass
class FixedBandModel:
    """Forecasts the known mean with a band of +- ``half_width``: too narrow or too wide for the noise."""

    mean: float
    half_width: float
    name: str = "fixed"

    def forecast(
        self, history: History, horizon_steps: int, quantiles: tuple[float, float] = DEFAULT_QUANTILES
    ) -> Forecast:
        point = np.full(horizon_steps, self.mean)
        return finish(history, point, point - self.half_width, point + self.half_width, self.name, quantiles)


@pytest.mark.parametrize("half_width", [0.5, 20.0])
def test_calibration_brings_a_too_narrow_or_too_wide_band_to_its_nominal_coverage(half_width: float) -> None:
    rng = np.random.default_rng(3)
    history = History(0.0, 60.0, rng.normal(100.0, 5.0, 20_000))  # the 10-90 % band is 100 +- 6.4
    result = backtest(history, [FixedBandModel(100.0, half_width)], 600, 600, 3 * 86_400)
    score = result.scores["fixed"]
    assert abs(score.coverage_own - 0.8) > 0.15  # the model's own band is far off
    assert score.coverage == pytest.approx(0.8, abs=0.03)
    assert score.above_upper == pytest.approx(0.1, abs=0.02) and score.below_lower == pytest.approx(0.1, abs=0.02)
    assert score.pinball_upper < score.pinball_upper_own


def test_mae_and_smape_of_a_constant_forecast_are_the_textbook_ones() -> None:
    history = History(0.0, 1.0, np.tile([10.0, 30.0], 200))
    result = backtest(history, [make_model("ma:2")], horizon_s=2, every_s=2, eval_s=100)
    score = result.scores["ma:2"]
    assert score.mae == pytest.approx(10.0)  # forecasts 20 against 10 and 30
    assert score.smape == pytest.approx(100 * (2 * 10 / 30 + 2 * 10 / 50) / 2)


def test_selection_picks_the_lowest_upper_band_loss() -> None:
    t = np.arange(6 * 288) * 300.0
    values = 100 + 50 * np.sin(2 * np.pi * t / 86_400)
    selection = select_model(History(0.0, 300.0, values), 3600, ["naive", "ma", "snaive_day"])
    assert selection.model_name == "snaive_day"
    assert selection.recent_mae == pytest.approx(0.0, abs=1e-9)


def test_backtest_command_prints_the_json_the_issue_specifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from forecaster import cli

    rng = np.random.default_rng(1)
    trace = tmp_path / "t.csv"
    rows = "\n".join(f"{60 * i},{v}" for i, v in enumerate(rng.poisson(20, 3000)))
    trace.write_text("timestamp,requests\n" + rows + "\n")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(
        ["forecast", "backtest", "--trace", str(trace), "--horizon-s", "600", "--every-s", "3600",
         "--eval-s", "86400", "--models", "naive,ma,profile", "--json"]
    )  # fmt: skip
    assert args.handler(args) == 0
    output = json.loads(capsys.readouterr().out)
    assert set(output["models"]) == {"naive", "ma", "profile"}
    assert output["selected"] in output["models"]
    assert set(output["models"]["ma"]) == {
        "mae", "smape", "pinball_upper", "coverage", "above_upper", "below_lower", "coverage_own_band",
        "pinball_upper_own_band", "fit_s",
    }  # fmt: skip


def test_backtest_is_deterministic() -> None:
    history = series()
    models = ["naive", "ma", "profile"]
    first = backtest(history, [make_model(m) for m in models], 600, 3600, 86_400)
    second = backtest(history, [make_model(m) for m in models], 600, 3600, 86_400)
    for name in models:
        assert first.scores[name].mae == second.scores[name].mae
        assert first.scores[name].coverage == second.scores[name].coverage
