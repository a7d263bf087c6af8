"""Turning a trace into a time-compressed replay: the live rate schedule, the history to seed, the simulator input.

Pure functions. ``compression`` C plays C seconds of the trace in one second (C = 360: a day in four minutes);
``scale`` multiplies the trace's rates (requests per second), as ``prewarm simulate --scale`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from prewarm.traces import Trace

DAY_S = 86_400


@dataclass(frozen=True)
class ReplayPlan:
    """Which part of the trace is replayed live, which part seeds the history, and how fast."""

    trace: Trace
    compression: float
    scale: float
    live_start_index: int  # first trace interval replayed live
    live_intervals: int
    history_intervals: int  # intervals before the live part that are stored as history

    @property
    def interval_replay_s(self) -> float:
        """How long one trace interval lasts in the replay."""
        return self.trace.step_s / self.compression

    @property
    def live_replay_s(self) -> float:
        return self.live_intervals * self.interval_replay_s

    @property
    def history_replay_s(self) -> float:
        return self.history_intervals * self.interval_replay_s

    def live_rates_rps(self) -> npt.NDArray[np.float64]:
        """The replay's request rate during each live trace interval."""
        part = self.trace.rates_rps[self.live_start_index : self.live_start_index + self.live_intervals]
        return part * self.scale

    def history_rates_rps(self) -> npt.NDArray[np.float64]:
        first = self.live_start_index - self.history_intervals
        return self.trace.rates_rps[first : self.live_start_index] * self.scale


def plan_days(
    trace: Trace,
    *,
    live_day: int,
    history_days: int,
    compression: float,
    peak_rps: float,
) -> ReplayPlan:
    """Replay day ``live_day`` of the trace (0 = its first day), seeded with the ``history_days`` before it, scaled
    so that the live day's highest interval rate is ``peak_rps``."""
    per_day = DAY_S // trace.step_s
    if history_days < 0 or live_day < history_days:
        raise ValueError(f"day {live_day} has no {history_days} days of history before it")
    start = live_day * per_day
    if start + per_day > len(trace.requests):
        raise ValueError(
            f"the trace has {len(trace.requests) // per_day} whole days; day {live_day} is not one"
        )
    live_peak = float(trace.rates_rps[start : start + per_day].max())
    if live_peak <= 0:
        raise ValueError(f"day {live_day} of the trace has no requests")
    return ReplayPlan(trace, compression, peak_rps / live_peak, start, per_day, history_days * per_day)


def per_second(rates_rps: npt.NDArray[np.float64], interval_replay_s: float) -> npt.NDArray[np.float64]:
    """Mean rate of each whole replay second (the intervals are shorter or longer than a second)."""
    edges = np.arange(len(rates_rps) + 1) * interval_replay_s
    seconds = math.floor(edges[-1] + 1e-9)
    requests = np.concatenate(([0.0], np.cumsum(rates_rps * interval_replay_s)))
    at = np.interp(np.arange(seconds + 1, dtype=np.float64), edges, requests)
    return np.diff(at)
