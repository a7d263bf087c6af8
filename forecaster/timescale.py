"""Forecasting a time-compressed replay: stretch the history to real time, forecast, compress the answer back.

A replay that plays a day of traffic in four minutes (compression 360) still has a *daily* pattern, only 240 s
long. The models know days and weeks as 86,400 and 604,800 seconds, so instead of teaching each model another
calendar, the history is shown to them stretched by the compression factor (one replayed second becomes 360 s of
model time) and the forecast's times are compressed back. Rates keep their units. With compression 1 both maps are
the identity, which is what every real deployment uses.
"""

from __future__ import annotations

import dataclasses

from forecaster.types import Forecast, History


def stretch(history: History, compression: float) -> History:
    """The history as the models should see it: times (and the step) multiplied by ``compression``."""
    if compression == 1.0:
        return history
    _check(compression)
    return History(history.start_ts * compression, history.step_s * compression, history.values)


def compress(forecast: Forecast, compression: float) -> Forecast:
    """A forecast made on a stretched history, mapped back to replay time."""
    if compression == 1.0:
        return forecast
    _check(compression)
    return dataclasses.replace(
        forecast, target_ts=forecast.target_ts / compression, step_s=forecast.step_s / compression
    )


def _check(compression: float) -> None:
    if not compression > 0:
        raise ValueError(f"time compression must be positive, got {compression}")
