"""The policies prewarm is compared with: Kubernetes HPA, Knative KPA, static peak provisioning and an oracle.

Each follows its documented algorithm and defaults; none is tuned against prewarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from controller.decision_values import FloatArray
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import ClusterView

_EPS = 1e-9


@dataclass
class HpaAutoscaler:
    """Kubernetes HPA (autoscaling/v2) on CPU utilisation, with its documented defaults.

    Every 15 s (sync period): ``desired = ceil(ready * utilisation / target)``, unchanged within the 10 % tolerance;
    on a scale-up, starting (unready) pods count as 0 % busy and the result is re-checked against the tolerance.
    Scale-down stabilisation 300 s (highest recommendation of the window); scale-up limited to
    max(100 %, 4 pods) per 15 s; scale-down 100 % per 15 s. CPU utilisation here is served rps / ready capacity,
    capped at 100 % as CPU is.
    """

    target_utilisation: float = 0.7
    name: str = "hpa"
    interval_s: int = 15
    tolerance: float = 0.1
    stabilisation_s: float = 300.0
    metric_window_s: int = 15
    _recommendations: list[tuple[int, int]] = field(default_factory=list)

    def desired(self, view: ClusterView) -> int:
        current = view.current
        w = self.metric_window_s
        capacity_s = float(view.ready_series[-w:].sum()) * view.cluster.replica_capacity_rps
        if view.ready == 0 or capacity_s <= 0:
            recommendation = current
        else:
            utilisation = min(1.0, float(view.served[-w:].sum()) / capacity_s)
            ratio = utilisation / self.target_utilisation
            if abs(ratio - 1.0) <= self.tolerance:
                recommendation = current
            else:
                recommendation = math.ceil(view.ready * ratio - _EPS)
                if recommendation > current and view.starting:
                    ratio = (
                        utilisation * view.ready / (self.target_utilisation * (view.ready + view.starting))
                    )
                    if ratio <= 1.0 + self.tolerance:
                        recommendation = current
        # Stabilisation: scale up at once, scale down only to the highest recommendation of the window.
        self._recommendations = [
            (t, r) for t, r in self._recommendations if t > view.t - self.stabilisation_s
        ]
        self._recommendations.append((view.t, recommendation))
        if recommendation > current:
            result = min(recommendation, max(2 * current, current + 4))
        else:
            result = min(current, max(r for _, r in self._recommendations))
        return max(result, 1)


@dataclass
class KpaAutoscaler:
    """Knative Pod Autoscaler in rps mode with its defaults.

    Every 2 s (tick): stable rps = mean of the last 60 s, panic rps = mean of the last 6 s; the per-pod target is
    70 % of a replica's capacity. Panic starts when the panic window asks for >= 200 % of the ready pods and ends
    after 60 s without that; in panic the count never goes down. Max scale-up rate 1000x, max scale-down rate 2x
    per tick; no scale-down delay.

    With ``scale_to_zero`` (Knative's ``enable-scale-to-zero``, on by default in Knative): once both windows hold no
    request the autoscaler wants 0; the last pod goes after ``scale_to_zero_grace_s`` (30 s, the documented upper
    bound the system waits for the activator to be in the path; taken in full, which keeps the pod longer and so
    never adds a cold start). At zero the activator holds the requests and pokes the autoscaler: a request in the
    last tick asks for a pod at once.
    """

    capacity_rps: float
    target_utilisation: float = 0.7
    name: str = "kpa"
    interval_s: int = 2
    stable_window_s: int = 60
    panic_window_s: int = 6
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_to_zero: bool = False
    scale_to_zero_grace_s: float = 30.0
    _panic_since: int | None = None
    _inactive_since: int | None = None
    _max_panic_pods: int = 0

    def desired(self, view: ClusterView) -> int:
        target = self.capacity_rps * self.target_utilisation
        stable = view.mean_arrivals(self.stable_window_s) / target
        panic = view.mean_arrivals(self.panic_window_s) / target
        ready = max(view.ready, 1)
        desired_stable = math.ceil(stable - _EPS)
        desired_panic = math.ceil(panic - _EPS)
        if panic / ready >= self.panic_threshold:
            if self._panic_since is None:
                self._max_panic_pods = view.ready
            self._panic_since = view.t
        elif self._panic_since is not None and view.t - self._panic_since >= self.stable_window_s:
            self._panic_since = None
            self._max_panic_pods = 0
        if self._panic_since is not None:
            # Provision for the larger of the two windows; only increases apply while panicking.
            self._max_panic_pods = max(self._max_panic_pods, desired_panic, desired_stable)
            want = self._max_panic_pods
        else:
            want = desired_stable
        up_limit = math.ceil(self.max_scale_up_rate * ready)
        down_limit = math.floor(ready / self.max_scale_down_rate)
        result = max(min(want, up_limit), down_limit, 1)
        if not self.scale_to_zero:
            return result
        if view.current == 0:  # the activator holds arriving requests and pokes the autoscaler at once
            return max(1, min(want, up_limit)) if view.mean_arrivals(self.interval_s) > 0 else 0
        if want > 0:
            self._inactive_since = None
            return result
        if self._inactive_since is None:
            self._inactive_since = view.t
        if view.t - self._inactive_since >= self.scale_to_zero_grace_s:
            self._inactive_since = None
            return 0
        return result


def static_peak_replicas(peak_rps: float, capacity_rps: float, target_utilisation: float) -> int:
    """Replicas that carry the trace's peak interval rate at the target utilisation."""
    return max(1, math.ceil(peak_rps / (capacity_rps * target_utilisation) - _EPS))


@dataclass(frozen=True)
class OracleSchedule:
    ready: FloatArray
    billed: FloatArray
    actions: int


def oracle_schedule(arrivals: FloatArray, cluster: ClusterModel, min_replicas: int = 1) -> OracleSchedule:
    """The cheapest schedule with zero violations, knowing the future, with the same startup delay.

    Zero violations need ``ceil(arrivals / capacity)`` ready replicas every second. Replicas are interchangeable,
    so each level k (the k-th replica) is planned on its own: it must be ready whenever the need is >= k, is
    started ``startup_s`` before, and stays up across an idle gap no longer than the startup time (keeping it costs
    the gap, restarting costs the startup). Replicas needed at the start are ready at second 0.
    """
    n = len(arrivals)
    need = np.maximum(np.ceil(arrivals / cluster.replica_capacity_rps - _EPS), min_replicas).astype(np.int64)
    startup = cluster.startup_s
    ready_delta = np.zeros(n + 1)
    billed_delta = np.zeros(n + 1)
    change_times: set[int] = set()
    for level in range(1, int(need.max(initial=0)) + 1):
        on = need >= level
        edges = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        if starts.size == 0:
            continue
        gaps = starts[1:] - ends[:-1]
        keep = np.concatenate(
            ([True], gaps > startup)
        )  # a new run starts after a gap longer than the startup
        run_starts = starts[keep]
        run_ends = np.concatenate((ends[:-1][keep[1:]], [ends[-1]]))
        bill_starts = np.maximum(run_starts - startup, 0)
        bill_starts[run_starts == 0] = 0
        np.add.at(ready_delta, run_starts, 1)
        np.add.at(ready_delta, run_ends, -1)
        np.add.at(billed_delta, bill_starts, 1)
        np.add.at(billed_delta, run_ends, -1)
        change_times.update(int(x) for x in bill_starts if x > 0)
        change_times.update(int(x) for x in run_ends if x < n)
    ready = np.cumsum(ready_delta)[:n]
    billed = np.cumsum(billed_delta)[:n]
    return OracleSchedule(ready, billed, len(change_times))
