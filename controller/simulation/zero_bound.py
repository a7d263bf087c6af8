"""The best trade-off between time at zero and cold-started requests that knowing the rate allows (docs/zero.md).

The oracle knows each period's Poisson rate exactly (not the arrival times) and chooses, period by period, to keep
one replica up (no cold start, no saving) or to scale to zero reactively: down after ``grace_s`` without a request,
up when a request arrives, ready ``startup_s`` later. Within a period of rate ``lam`` arrivals are memoryless: how
long the deployment has been idle says nothing about the next request, so waking on a timer or waiting longer than
the grace only mixes these two modes; the frontier of each period is the segment between them, and across periods
the best is to go to zero in the periods of lowest rate first (their cold starts per second at zero are lowest).

One cycle of reactive zero, starting at the request that ends a stretch at zero (time 0):
- at zero before it: ``1 / lam`` on average, plus ``wake_delay_s`` (from that request to the replica's start);
- cold-started requests: that one and every arrival until ready, ``1 + lam * (wake_delay_s + startup_s)``;
- down at the first ``t`` after ready with no request in ``(t - grace_s, t]``: with ``grace_s`` >= ready time,
  ``E[t] = (e^(lam g) - 1) / lam`` (the expected wait for a gap of length ``g`` after an arrival).
So with ``grace_s`` >= ready time the share of time at zero is ``e^(-lam g)`` and a second at zero costs
``lam (1 + lam S)`` cold-started requests (wake delay 0): one per ``1 / (lam (1 + lam S))`` seconds at zero,
whatever the grace. The figures are expectations for stationary periods; changes of mode at period boundaries are
left out (at most one cycle per period).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ZeroCycle:
    """Expected shares of one period under reactive zero (per second of the period)."""

    zero_share: float  # share of the period with no replica billed
    cold_per_s: float  # cold-started requests per second of the period


def reactive_zero_cycle(
    rate_rps: float, startup_s: float, grace_s: float, wake_delay_s: float = 0.0
) -> ZeroCycle:
    """Reactive scale to zero in a period of Poisson rate ``rate_rps``: its expected time at zero and cold starts."""
    if rate_rps < 0 or startup_s < 0 or grace_s < 0 or wake_delay_s < 0:
        raise ValueError("rate, startup, grace and wake delay must not be negative")
    lam = rate_rps
    if lam == 0:
        return ZeroCycle(1.0, 0.0)
    ready = wake_delay_s + startup_s  # after the first request
    gap = (math.expm1(lam * grace_s)) / lam  # from an arrival to the end of the first gap of grace_s
    if grace_s >= ready:
        down = gap
    else:  # the grace has passed by the time the replica is ready: down then, unless a request came in (ready-g, ready]
        p_none = math.exp(-lam * grace_s)
        back = (1 / lam - p_none * (grace_s + 1 / lam)) / (1 - p_none)  # ready - last arrival, given one
        down = p_none * ready + (1 - p_none) * (ready - back + gap)
    cycle = 1 / lam + down
    zero = 1 / lam + wake_delay_s
    cold = 1 + lam * ready
    return ZeroCycle(zero / cycle, cold / cycle)


@dataclass(frozen=True)
class ZeroFrontier:
    """The oracle's frontier over a span: going to zero in the periods of lowest rate first.

    ``zero_s[k]`` and ``cold[k]`` are the totals after the ``k`` lowest-rate periods (``k`` = 0: none); between two
    points the frontier is the straight line (zero in a part of the next period)."""

    span_s: float
    zero_s: npt.NDArray[np.float64]
    cold: npt.NDArray[np.float64]

    def min_cold(self, zero_share: float) -> float | None:
        """Fewest expected cold-started requests for at least ``zero_share`` of the span at zero; None if even zero
        in every period does not reach it."""
        target = zero_share * self.span_s
        if target > self.zero_s[-1] + 1e-9:
            return None
        return float(np.interp(target, self.zero_s, self.cold))

    def max_zero_share(self, cold: float) -> float:
        """The largest share of the span at zero with at most ``cold`` expected cold-started requests."""
        return float(np.interp(cold, self.cold, self.zero_s)) / self.span_s


def zero_frontier(
    rates_rps: npt.ArrayLike, period_s: float, startup_s: float, grace_s: float, wake_delay_s: float = 0.0
) -> ZeroFrontier:
    """The frontier for periods of ``period_s`` seconds with the Poisson rates ``rates_rps`` (requests/s)."""
    rates = np.sort(np.asarray(rates_rps, dtype=np.float64))
    if rates.size == 0 or period_s <= 0:
        raise ValueError("need at least one period of positive length")
    cycles = [reactive_zero_cycle(float(r), startup_s, grace_s, wake_delay_s) for r in rates]
    zero = np.array([c.zero_share for c in cycles]) * period_s
    cold = np.array([c.cold_per_s for c in cycles]) * period_s
    return ZeroFrontier(
        float(rates.size * period_s),
        np.concatenate([[0.0], np.cumsum(zero)]),
        np.concatenate([[0.0], np.cumsum(cold)]),
    )
