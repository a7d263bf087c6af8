"""Time-compressed replays: a daily pattern played 360x faster is still forecast as a daily pattern."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster import History, make_model
from forecaster.timescale import compress, stretch

DAY_S = 86_400.0


def _daily_series(days: int, step_s: float, day_s: float) -> History:
    steps = int(days * day_s / step_s)
    t = np.arange(steps) * step_s
    values = 100 + 80 * np.sin(2 * np.pi * t / day_s)
    return History(0.0, step_s, values)


def test_identity_without_compression() -> None:
    history = _daily_series(1, 60.0, DAY_S)
    assert stretch(history, 1.0) is history


def test_stretch_scales_times_and_step_but_not_values() -> None:
    history = History(10.0, 2.0, np.array([1.0, 2.0]))
    stretched = stretch(history, 360.0)
    assert (stretched.start_ts, stretched.step_s) == (3600.0, 720.0)
    assert stretched.values.tolist() == [1.0, 2.0]


def test_a_compressed_daily_pattern_is_forecast_like_the_real_one() -> None:
    compression = 360.0
    day_replay_s = DAY_S / compression  # 240 s
    history = _daily_series(7, 1.0, day_replay_s)  # a week of "days" at 1 s steps in replay time
    horizon_steps = 60
    forecast = compress(
        make_model("profile").forecast(stretch(history, compression), horizon_steps), compression
    )
    assert forecast.step_s == pytest.approx(1.0)
    assert forecast.target_ts[0] == pytest.approx(history.end_ts)
    expected = 100 + 80 * np.sin(2 * np.pi * forecast.target_ts / day_replay_s)
    assert np.mean(np.abs(forecast.point - expected)) < 8.0  # follows the 240 s "day", not a flat level
    flat = make_model("profile").forecast(history, horizon_steps)  # uncompressed: sees less than a day
    assert np.mean(np.abs(flat.point - expected)) > 2 * np.mean(np.abs(forecast.point - expected))


def test_rejects_a_non_positive_factor() -> None:
    with pytest.raises(ValueError, match="positive"):
        stretch(History(0.0, 1.0, np.ones(3)), 0.0)
