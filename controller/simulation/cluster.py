"""The model of a replica cluster: capacity, startup delay, price, a bounded queue and a latency estimate.

Latency model (docs/simulator.md): each ready replica is an M/M/1 server whose service rate ``mu`` is chosen so that
the 95th percentile of the time in system equals the SLO exactly when the replica carries its capacity:
``p95(lambda) = ln(20) / (mu - lambda)`` and ``mu = capacity + ln(20) / slo``. Requests that find every replica at
capacity wait in the gateway's FIFO queue; their extra wait is ``queue / (ready x capacity)``. Requests that would
wait longer than ``max_wait_s`` are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.decision_values import FloatArray

# Requests per second one replica serves at the 50 ms p95 SLO: the replica benchmark's compute-bound model
# (rapidocr's text-direction classifier, ~0.5 ms per inference) on one worker, 1,677 req/s with p95 of 1.5 ms at
# 1,000 req/s (docs/inference.md, `python -m benchmarks.replica_bench`). Override with --capacity.
DEFAULT_REPLICA_CAPACITY_RPS = 1677.0
# Measured pre-warm time of a replica (process start, model load, warm-up inferences) until readiness: the replica
# benchmark saw 0.4-1.3 s for the default model; the slower end is used. Override with --prewarm-s.
DEFAULT_PREWARM_S = 1.3
# Time from a scale-up decision to the replica process starting: pod scheduling, image already cached.
DEFAULT_SCHEDULING_DELAY_S = 20.0
DEFAULT_PRICE_PER_REPLICA_HOUR = 0.10
DEFAULT_SLO_P95_MS = 50.0
DEFAULT_MAX_WAIT_S = 30.0
_LN20 = math.log(20.0)


@dataclass(frozen=True)
class ClusterModel:
    """What a replica can do and what it costs; the same for every policy in a run."""

    replica_capacity_rps: float = DEFAULT_REPLICA_CAPACITY_RPS
    prewarm_s: float = DEFAULT_PREWARM_S
    scheduling_delay_s: float = DEFAULT_SCHEDULING_DELAY_S
    price_per_replica_hour: float = DEFAULT_PRICE_PER_REPLICA_HOUR
    slo_p95_ms: float = DEFAULT_SLO_P95_MS
    max_wait_s: float = DEFAULT_MAX_WAIT_S

    def __post_init__(self) -> None:
        if self.replica_capacity_rps <= 0:
            raise ValueError("replica_capacity_rps must be positive")
        if self.prewarm_s < 0 or self.scheduling_delay_s < 0:
            raise ValueError("prewarm_s and scheduling_delay_s must not be negative")

    @property
    def startup_s(self) -> int:
        """Whole seconds from a scale-up decision until the new replica is ready."""
        return math.ceil(self.prewarm_s + self.scheduling_delay_s)

    @property
    def service_rate_rps(self) -> float:
        """M/M/1 service rate of one replica, calibrated so that p95 = SLO at capacity."""
        return self.replica_capacity_rps + _LN20 / (self.slo_p95_ms / 1000.0)

    def p95_ms(self, served: FloatArray, ready: FloatArray, queue: FloatArray) -> FloatArray:
        """Estimated p95 latency per second; NaN where no replica is ready."""
        with np.errstate(divide="ignore", invalid="ignore"):
            per_replica = served / ready
            service = _LN20 / (self.service_rate_rps - per_replica) * 1000.0
            wait = queue / (ready * self.replica_capacity_rps) * 1000.0
            out = service + wait
        return np.where(ready > 0, out, np.nan)


@dataclass(frozen=True)
class Served:
    """Per-second outcome of offering ``arrivals`` to a capacity."""

    served: FloatArray
    queue: FloatArray  # requests waiting at the end of each second
    dropped: FloatArray


def serve(arrivals: FloatArray, capacity: FloatArray, queue0: float, bound: FloatArray) -> Served:
    """FIFO queue in front of the replicas, one step per second: ``q' = min(bound, max(0, q + a - c))``.

    Seconds where nothing is queued and arrivals fit the capacity are handled in bulk; only stretches with a queue
    are stepped in Python.
    """
    n = len(arrivals)
    served = arrivals.astype(np.float64, copy=True)
    queue = np.zeros(n)
    dropped = np.zeros(n)
    over = np.flatnonzero(arrivals > capacity)
    q = float(queue0)
    i = 0
    while i < n:
        if q <= 0.0:
            k = int(np.searchsorted(over, i))
            if k >= over.size:
                break
            i = int(over[k])
        x = q + float(arrivals[i])
        s = min(x, float(capacity[i]))
        q = x - s
        d = q - float(bound[i])
        if d > 0:
            q -= d
            dropped[i] = d
        served[i] = s
        queue[i] = q
        i += 1
    return Served(served, queue, dropped)


def queue_bound(cluster: ClusterModel, ready: FloatArray) -> FloatArray:
    """Most requests that can wait: ``max_wait_s`` of the ready capacity (at least one replica's worth)."""
    return np.maximum(ready, 1.0) * cluster.replica_capacity_rps * cluster.max_wait_s
