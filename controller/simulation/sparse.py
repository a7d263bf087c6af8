"""Sparse workloads for scale to zero: a shipped trace thinned so its idle stretches come from its real rhythm.

Poisson thinning keeps each request of the trace independently with probability ``keep``: a Poisson process stays
Poisson with ``keep`` times the rate, so the daily and weekly rhythm, the bursts and the silences of the real trace
survive, only sparser. A coarse interval's kept requests are placed uniformly at random in its seconds (the same
assumption as ``per_second_arrivals``). Seeded: the same trace, ``keep`` and seed give the same arrivals.

The rule that picks ``keep`` (docs/zero.md): thin to a mean of ``per_minute`` requests per minute over the whole
trace, one by default: a deployment used about once a minute on average, the long tail of a model platform that
scale to zero is for. The rule looks at the trace only, never at any policy's result.
"""

from __future__ import annotations

import numpy as np

from controller.decision_values import FloatArray
from controller.simulation.workload import DEFAULT_SEED, Workload
from prewarm.traces import Trace

SPARSE_REQUESTS_PER_MINUTE = 1.0


def keep_for_mean_rate(trace: Trace, per_minute: float = SPARSE_REQUESTS_PER_MINUTE) -> float:
    """The thinning probability that leaves a mean of ``per_minute`` requests per minute (at most 1: keep all)."""
    minutes = trace.duration_s / 60.0
    total = float(trace.requests.sum())
    if total <= 0 or minutes <= 0:
        return 1.0
    return min(1.0, per_minute * minutes / total)


def thinned_arrivals(trace: Trace, keep: float, seed: int = DEFAULT_SEED) -> Workload:
    """Per-second arrivals of ``trace`` with each request kept with probability ``keep`` (seeded)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    rng = np.random.default_rng(seed)
    counts = np.rint(trace.requests).astype(np.int64)
    kept = rng.binomial(counts, keep)
    step = trace.step_s
    n = len(counts) * step
    if step == 1:
        arrivals = kept.astype(np.float64)
    else:
        starts = np.repeat(np.arange(len(kept), dtype=np.int64) * step, kept)
        seconds = starts + rng.integers(0, step, size=starts.size)
        arrivals = np.bincount(seconds, minlength=n).astype(np.float64)
    peak = float(kept.max()) / step if kept.size else 0.0
    return Workload(f"{trace.name} (sparse)", float(trace.timestamps[0]), arrivals, keep, step, peak)


def quietest_hour(workload: Workload) -> tuple[int, float, float] | None:
    """The hour of the day (UTC) with the fewest requests over the workload's whole days: the hour, the share of its
    minutes with at least one request and its mean requests per minute; None for less than a day."""
    days = workload.seconds // 86400
    if days < 1:
        return None
    offset = int(-workload.start_ts % 3600)  # first whole hour
    hours = (workload.seconds - offset) // 3600
    minutes = workload.arrivals[offset : offset + hours * 3600].reshape(hours, 60, 60).sum(axis=2)
    first_hour = int(((workload.start_ts + offset) // 3600) % 24)
    hour_of_day = (first_hour + np.arange(hours)) % 24
    rate = np.array([minutes[hour_of_day == h].mean() for h in range(24)])
    busy = np.array([(minutes[hour_of_day == h] > 0).mean() for h in range(24)])
    h = int(np.argmin(rate))
    return h, float(busy[h]), float(rate[h])


def period_rates(trace: Trace, keep: float, seconds: int, period_s: int = 3600) -> tuple[FloatArray, int]:
    """The thinned trace's Poisson rate (requests/s) in each whole period of ``period_s`` over its first ``seconds``:
    what an oracle on the rate knows. A span shorter than a period is one period of its own length."""
    step = trace.step_s
    n = min(len(trace.requests), max(1, seconds // step))
    period = max(step, min(period_s, n * step) // step * step)
    per = period // step
    whole = n // per
    counts = trace.requests[: whole * per].reshape(whole, per).sum(axis=1)
    return keep * counts / period, int(period)
