"""Replay per-second arrivals through an autoscaler and the cluster model, one decision period at a time."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from controller.decision_values import FloatArray
from controller.simulation.cluster import ClusterModel, queue_bound, serve
from controller.simulation.workload import Workload


@dataclass(frozen=True)
class ClusterView:
    """What an autoscaler may see at second ``t``: every per-second array ends just before ``t`` (no peeking)."""

    t: int  # seconds since the trace start
    now_ts: float  # epoch seconds of ``t``
    arrivals: FloatArray
    arrivals_cumsum: FloatArray  # arrivals_cumsum[i] = sum(arrivals[:i]), i <= t
    served: FloatArray
    queue: FloatArray
    ready_series: FloatArray
    ready: int  # replicas ready now
    starting: int  # replicas asked for and not ready yet
    cluster: ClusterModel
    held: int = 0  # of ``ready``: replicas kept only until a move between capacity pools is done (not decided)

    @property
    def current(self) -> int:
        """The count the autoscaler decided last (as far as it is placed): ready and starting, without holds."""
        return self.ready + self.starting - self.held

    def mean_arrivals(self, seconds: int) -> float:
        """Mean arrivals per second over the last ``seconds`` (fewer at the start)."""
        k = min(seconds, self.t)
        if k <= 0:
            return 0.0
        return float(self.arrivals_cumsum[self.t] - self.arrivals_cumsum[self.t - k]) / k

    def p95_window_ms(self, seconds: int) -> FloatArray:
        """The latency estimate of the last ``seconds``."""
        return self.cluster.p95_ms(
            self.served[-seconds:], self.ready_series[-seconds:], self.queue[-seconds:]
        )


class Autoscaler(Protocol):
    """A closed-loop policy: every ``interval_s`` seconds it returns the replica count it wants."""

    @property
    def name(self) -> str: ...

    @property
    def interval_s(self) -> int: ...

    def desired(self, view: ClusterView) -> int: ...


@dataclass
class PolicyRun:
    """Per-second outcome of one policy over the whole workload."""

    name: str
    ready: FloatArray
    billed: FloatArray  # replicas paid for (starting or ready)
    served: FloatArray
    queue: FloatArray
    dropped: FloatArray
    p95_ms: FloatArray
    actions: int
    extras: dict[str, FloatArray] = field(default_factory=dict)  # e.g. the forecast band, for the plot


def simulate_closed_loop(
    autoscaler: Autoscaler,
    workload: Workload,
    cluster: ClusterModel,
    initial_replicas: int,
    min_replicas: int,
    max_replicas: int,
) -> PolicyRun:
    """Step the cluster per decision period; inside a period only readiness and the queue change."""
    arrivals = workload.arrivals
    n = len(arrivals)
    cumsum = np.concatenate(([0.0], np.cumsum(arrivals)))
    ready = np.zeros(n)
    billed = np.zeros(n)
    served = arrivals.astype(np.float64, copy=True)  # overwritten where capacity falls short
    queue = np.zeros(n)
    dropped = np.zeros(n)
    startup = cluster.startup_s
    period = max(1, int(autoscaler.interval_s))
    capacity_rps = cluster.replica_capacity_rps
    pending: deque[int] = deque()  # ready times of starting replicas, ascending
    ready_now = initial_replicas
    q = 0.0
    actions = 0
    busy = np.flatnonzero(arrivals > 0)  # seconds with requests (the activator's pokes at zero)
    t = 0
    while t < n:
        end = min(n, t + period)
        while pending and pending[0] <= t:
            pending.popleft()
            ready_now += 1
        if t > 0:
            view = ClusterView(
                t,
                workload.start_ts + t,
                arrivals[:t],
                cumsum[: t + 1],
                served[:t],
                queue[:t],
                ready[:t],
                ready_now,
                len(pending),
                cluster,
            )
            want = min(max(int(autoscaler.desired(view)), min_replicas), max_replicas)
            total = ready_now + len(pending)
            if want != total:
                actions += 1
                if want > total:
                    pending.extend([t + startup] * (want - total))
                else:
                    remove = total - want
                    while remove and pending:  # the newest starting replicas go first
                        pending.pop()
                        remove -= 1
                    ready_now -= remove
        if ready_now == 0 and not pending:
            # At zero the activator holds the first request and tells the autoscaler at once (Knative's poke,
            # prewarm's push): the next decision comes the second after it, not at the end of the period.
            k = int(np.searchsorted(busy, t))
            if k < busy.size and busy[k] < end:
                end = int(busy[k]) + 1
        billed[t:end] = ready_now + len(pending)
        start, t = t, end
        if not (pending and pending[0] < end):
            ready[start:end] = ready_now
            if q <= 0.0 and float(arrivals[start:end].max()) <= ready_now * capacity_rps:
                continue  # everything served at once, nothing queued: served already holds the arrivals
            seg = np.full(end - start, float(ready_now))
        else:
            seg = np.full(end - start, float(ready_now))
            for ready_at in pending:
                if ready_at >= end:
                    break
                seg[ready_at - start :] += 1.0
            ready[start:end] = seg
        q = serve_period(cluster, arrivals, seg, start, q, served, queue, dropped)
    p95 = cluster.p95_ms(served, ready, queue)
    return PolicyRun(autoscaler.name, ready, billed, served, queue, dropped, p95, actions)


def serve_period(
    cluster: ClusterModel,
    arrivals: FloatArray,
    ready: FloatArray,
    start: int,
    queued: float,
    served: FloatArray,
    queue: FloatArray,
    dropped: FloatArray,
) -> float:
    """Serve the seconds ``[start, start + len(ready))`` with ``ready`` replicas each second, starting with
    ``queued`` requests waiting; writes ``served``, ``queue`` and ``dropped`` there (left as they are when every
    arrival is served at once and nothing queues) and returns the queue left at the end."""
    end = start + ready.size
    capacity = ready * cluster.replica_capacity_rps
    a = arrivals[start:end]
    if queued <= 0.0 and not np.any(a > capacity):
        return queued
    out = serve(a, capacity, queued, queue_bound(cluster, ready))
    served[start:end] = out.served
    queue[start:end] = out.queue
    dropped[start:end] = out.dropped
    return float(out.queue[-1])


def simulate_schedule(
    name: str, workload: Workload, cluster: ClusterModel, ready: FloatArray, billed: FloatArray, actions: int
) -> PolicyRun:
    """An open-loop policy (static, oracle): the replica counts per second are given."""
    capacity = ready * cluster.replica_capacity_rps
    out = serve(workload.arrivals, capacity, 0.0, queue_bound(cluster, ready))
    p95 = cluster.p95_ms(out.served, ready, out.queue)
    return PolicyRun(name, ready, billed, out.served, out.queue, out.dropped, p95, actions)
