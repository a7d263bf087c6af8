"""Learned per-replica capacity: the request rate one replica serves within the latency SLO, from the deployment's
own observations instead of a number the user types in.

Evidence is per second: the load per ready replica (rps / ready), the p95 latency, the gateway's queue and the
replicas' CPU. ``CapacityEvidence`` keeps it compactly (weights per load level, levels 5 % apart, and the sums of
a CPU-on-load regression), forgetting old evidence with a half-life (a model or node change moves the capacity):

- **saturation throughput**: a second that starts and ends with requests queued at the gateway kept every replica
  busy, so what they answered in it is their capacity, measured directly (the median of such seconds).
- **latency knee**: a second is *bad* when its p95 is over the SLO or requests queue at the gateway. The capacity is
  the lowest load level at which most seconds are bad (the knee), when one was observed: loads below it were
  served within the SLO. The knee *brackets* the capacity.
- **CPU saturation**: the CPU per replica grows with the load; extrapolated to ``cpu_saturation_percent`` it gives
  an upper limit (for compute-bound models it binds before latency shows anything).
- **lower bound**: without a knee and without CPU saturation in reach, the evidence only says the capacity is at
  least the highest load level that was served well.
- **strain**: the lowest load level at which a quarter of the seconds were bad; it comes before the knee (fewer bad
  seconds show it), and a probe stops there.

``LearnedCapacity`` says which, with the number of informative seconds and a confidence. ``capacity_in_use`` (a
pure step of ``decide()``) turns it into the capacity a decision uses, with its reason: the estimate once it is
bracketed and confident; while only a lower bound is known, the starting value, raised step by step above the
highest load served well (probing: the loads rise until the knee shows, and the reactive path catches the seconds
past it), never past the strain. The live loop and the simulator feed the same evidence with the same seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import isotonic_regression

FloatArray = npt.NDArray[np.float64]

LEVEL_RATIO = 1.05  # load levels are 5 % apart
LEVEL_BASE_RPS = 0.1  # level 0 starts here
MIN_LEVEL_WEIGHT = 20.0  # seconds (after decay) a lower bound or a throughput needs before it says anything
MIN_KNEE_WEIGHT = 10.0  # seconds at and past a knee before it says anything (overload is costly: believed sooner)
BAD_SHARE_KNEE = 0.5  # a level where at least this share of seconds is bad is past the knee
BAD_SHARE_GOOD = 0.1  # a level with at most this share of bad seconds was served well
BAD_SHARE_STRAIN = 0.25  # from a level with this share of bad seconds on, the loads strain the replica
CPU_EXTRAPOLATION_LIMIT = 3.0  # CPU saturation further than this many times the highest load seen is not trusted


def level_of(load_rps: float) -> int:
    return math.floor(math.log(max(load_rps, LEVEL_BASE_RPS) / LEVEL_BASE_RPS) / math.log(LEVEL_RATIO))


def level_floor(level: int) -> float:
    return LEVEL_BASE_RPS * LEVEL_RATIO**level


@dataclass(frozen=True)
class LearnedCapacity:
    """What the evidence says about the rps one replica serves within the SLO."""

    rps_per_replica: float
    observations: int  # seconds (after decay) at loads that informed the estimate
    confidence: float  # 0-1: how many informative seconds, and whether the capacity is bracketed
    basis: str  # "saturation throughput", "latency knee", "cpu saturation" or "lower bound"
    bracketed: bool  # an upper limit was observed (knee or CPU): the estimate is the capacity, not a floor
    strained_rps: float | None = None  # the lowest load at which a quarter of the seconds were bad (None: not seen)

    def describe(self) -> str:
        kind = "" if self.bracketed else "at least "
        strain = f", a quarter of the seconds bad from {self.strained_rps:.1f} rps" if self.strained_rps else ""
        return (
            f"{kind}{self.rps_per_replica:.1f} rps per replica ({self.basis}, {self.observations} s of evidence, "
            f"confidence {self.confidence:.2f}{strain})"
        )


@dataclass
class CapacityEvidence:
    """Decaying per-level counts of good and bad seconds, and CPU regression sums. Mutable; one per deployment."""

    half_life_s: float = 86_400.0
    levels: dict[int, list[float]] = field(default_factory=dict)  # level -> [good weight, bad weight]
    cpu_sums: list[float] = field(default_factory=lambda: [0.0] * 5)  # w, wx, wy, wxx, wxy
    throughput: dict[int, float] = field(default_factory=dict)  # level -> weight of saturated seconds' throughput
    last_ts: float | None = None  # newest second added
    last_backlog: bool = False  # that second ended with requests queued

    def add(
        self,
        timestamps: FloatArray,
        load_per_replica: FloatArray,
        latency_p95_ms: FloatArray,
        queue_length: FloatArray,
        cpu_percent: FloatArray,
        served_per_replica: FloatArray | None = None,
        *,
        slo_p95_ms: float,
    ) -> int:
        """Add the seconds newer than any added before; returns how many were used (seconds with load, a
        measured latency and at least one ready replica, as the caller computed ``load_per_replica``).

        A second that starts and ends with requests queued at the gateway kept every replica busy: what the
        replicas answered in it (``served_per_replica``) is their saturation throughput."""
        newer = timestamps > (self.last_ts if self.last_ts is not None else -math.inf)
        if not newer.any():
            return 0
        if served_per_replica is not None:
            self._add_throughput(newer, queue_length, served_per_replica)
        load = load_per_replica[newer]
        latency = latency_p95_ms[newer]
        usable = np.isfinite(load) & (load > 0) & np.isfinite(latency)
        newest = float(timestamps[newer].max())
        self._decay(newest)
        self.last_ts = newest
        all_queue = np.nan_to_num(queue_length[newer], nan=0.0)
        # A second after one that ended with a backlog pays for that backlog, not for its own load: it says
        # nothing about the load it carried (the throughput evidence above uses it).
        carried = np.concatenate(([self.last_backlog], all_queue[:-1] >= 1.0))
        self.last_backlog = bool(all_queue[-1] >= 1.0)
        usable &= ~carried
        if not usable.any():
            return 0
        queue = all_queue[usable]
        load, latency = load[usable], latency[usable]
        bad = (latency > slo_p95_ms) | (queue > 0.5)
        for value, is_bad in zip(load, bad, strict=True):
            counts = self.levels.setdefault(level_of(float(value)), [0.0, 0.0])
            counts[1 if is_bad else 0] += 1.0
        cpu = cpu_percent[newer][usable]
        good_cpu = np.isfinite(cpu) & ~bad  # queueing seconds say nothing about CPU per request
        if good_cpu.any():
            x, y = load[good_cpu], cpu[good_cpu]
            for index, value in enumerate((float(len(x)), x.sum(), y.sum(), (x * x).sum(), (x * y).sum())):
                self.cpu_sums[index] += float(value)
        return int(usable.sum())

    def _add_throughput(self, newer: npt.NDArray[np.bool_], queue: FloatArray, served: FloatArray) -> None:
        backlog = np.nan_to_num(queue, nan=0.0) >= 1.0
        first = int(np.argmax(newer))  # the second before the first new one ended as the last batch said
        before = np.concatenate(([False], backlog[:-1]))
        before[first] = self.last_backlog
        saturated = newer & backlog & before & np.isfinite(served) & (served > 0)
        for value in served[saturated]:
            level = level_of(float(value))
            self.throughput[level] = self.throughput.get(level, 0.0) + 1.0

    def _decay(self, now: float) -> None:
        if self.last_ts is None or now <= self.last_ts:
            return
        factor = 0.5 ** ((now - self.last_ts) / self.half_life_s)
        if factor > 0.999:
            return
        for counts in self.levels.values():
            counts[0] *= factor
            counts[1] *= factor
        self.cpu_sums = [value * factor for value in self.cpu_sums]
        self.throughput = {level: weight * factor for level, weight in self.throughput.items()}

    def estimate(self, *, cpu_saturation_percent: float = 90.0) -> LearnedCapacity | None:
        """The capacity the evidence supports, or None before it says anything.

        The share of bad seconds can only grow with the load: a weighted isotonic fit of it over the levels
        (pool-adjacent-violators) judges a sparse level with its neighbours instead of alone (the busiest seconds
        are few), and outweighs a cluster of bad seconds at a low load (a cold start, a pause) by the good ones
        above it. The knee is the lowest level whose fitted share is at least ``BAD_SHARE_KNEE``, given
        ``MIN_KNEE_WEIGHT`` seconds at and above it; the lower bound the highest level whose fitted share is at
        most ``BAD_SHARE_GOOD``, given ``MIN_LEVEL_WEIGHT`` seconds at and above it. Between the two, the *strain*:
        the lowest level whose fitted share is at least ``BAD_SHARE_STRAIN``, given ``MIN_KNEE_WEIGHT`` seconds at
        and above it (a probe must not plan past it; see ``controller.steps.capacity_in_use``)."""
        ordered = sorted(self.levels.items())
        knee, served, strain = self._knee_bound_and_strain(ordered)
        saturation = self._saturation_throughput()
        # Measured throughput wins unless latency crossed the SLO clearly (more than a level) below it.
        if saturation is not None and (knee is None or level_floor(knee) * LEVEL_RATIO**1.5 >= saturation):
            rps, basis, bracketed = saturation, "saturation throughput", True
        elif knee is not None:
            rps, basis, bracketed = level_floor(knee), "latency knee", True
        elif served is not None:
            rps, basis, bracketed = level_floor(served), "lower bound", False
        else:
            return None
        highest_seen = level_floor(ordered[-1][0] + 1)
        cpu_limit = self._cpu_limit(cpu_saturation_percent)
        if cpu_limit is not None and cpu_limit <= CPU_EXTRAPOLATION_LIMIT * highest_seen:
            if bracketed and cpu_limit < rps:  # the CPU saturates before latency shows it
                rps, basis = cpu_limit, "cpu saturation"
            elif not bracketed and cpu_limit >= rps:  # served well up to rps; the CPU says where it ends
                rps, basis, bracketed = cpu_limit, "cpu saturation", True
        if basis == "saturation throughput":  # measured directly: as good as the saturated seconds are many
            weight = sum(self.throughput.values())
            reach = 1.0
        elif basis == "cpu saturation":
            # A fit over every load seen; less sure the further it is extrapolated beyond them.
            weight = sum(good + bad for good, bad in self.levels.values())
            reach = min(1.0, 2.0 * highest_seen / rps)
        else:  # a knee or a floor is only as good as the seconds near it
            weight = sum(g + b for level, (g, b) in ordered if level_floor(level + 1) >= 0.5 * rps)
            reach = 1.0
        confidence = min(1.0, weight / (10 * MIN_LEVEL_WEIGHT)) * reach * (1.0 if bracketed else 0.5)
        strained = level_floor(strain) if strain is not None else None
        return LearnedCapacity(rps, round(weight), round(confidence, 3), basis, bracketed, strained)

    @staticmethod
    def _knee_bound_and_strain(
        ordered: list[tuple[int, list[float]]],
    ) -> tuple[int | None, int | None, int | None]:
        """The knee, the lower bound and the strain (levels; None: not known yet) from the isotonic fit (see
        ``estimate``)."""
        if not ordered:
            return None, None, None
        weights = np.array([good + bad for _, (good, bad) in ordered])
        shares = np.array([bad / max(good + bad, 1e-12) for _, (good, bad) in ordered])
        fitted = isotonic_regression(shares, weights=np.maximum(weights, 1e-12)).x
        at_and_above = np.cumsum(weights[::-1])[::-1]
        past = np.flatnonzero((fitted >= BAD_SHARE_KNEE) & (at_and_above >= MIN_KNEE_WEIGHT))
        knee = ordered[int(past[0])][0] if past.size else None
        well = np.flatnonzero((fitted <= BAD_SHARE_GOOD) & (at_and_above >= MIN_LEVEL_WEIGHT))
        served = ordered[int(well[-1])][0] if well.size else None
        strained = np.flatnonzero((fitted >= BAD_SHARE_STRAIN) & (at_and_above >= MIN_KNEE_WEIGHT))
        strain = ordered[int(strained[0])][0] if strained.size else None
        return knee, served, strain

    def _saturation_throughput(self) -> float | None:
        """The weighted median of the saturated seconds' throughput per replica (None: too few of them)."""
        total = sum(self.throughput.values())
        if total < MIN_LEVEL_WEIGHT:
            return None
        running = 0.0
        for level in sorted(self.throughput):
            running += self.throughput[level]
            if running >= total / 2:
                return level_floor(level) * math.sqrt(LEVEL_RATIO)  # the middle of the level
        return None

    def _cpu_limit(self, saturation_percent: float) -> float | None:
        """Load at which the fitted CPU per replica reaches saturation (None: no usable fit)."""
        w, wx, wy, wxx, wxy = self.cpu_sums
        if w < 10 * MIN_LEVEL_WEIGHT:
            return None
        variance = wxx / w - (wx / w) ** 2
        if variance <= 1e-12:
            return None
        slope = (wxy / w - (wx / w) * (wy / w)) / variance
        intercept = wy / w - slope * wx / w
        if slope <= 1e-9 or intercept >= saturation_percent:
            return None
        return (saturation_percent - intercept) / slope

    # -- persistence (the deployment's status row keeps it across restarts and failovers) ----------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "half_life_s": self.half_life_s,
            "levels": {str(k): [round(g, 3), round(b, 3)] for k, (g, b) in self.levels.items() if g + b >= 0.5},
            "cpu_sums": self.cpu_sums,
            "throughput": {str(k): round(w, 3) for k, w in self.throughput.items() if w >= 0.5},
            "last_ts": self.last_ts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, half_life_s: float) -> CapacityEvidence:
        if not data:
            return cls(half_life_s=half_life_s)
        try:
            levels = {int(k): [float(v[0]), float(v[1])] for k, v in (data.get("levels") or {}).items()}
            sums = [float(v) for v in data.get("cpu_sums") or [0.0] * 5][:5]
            throughput = {int(k): float(v) for k, v in (data.get("throughput") or {}).items()}
            last = data.get("last_ts")
            sums += [0.0] * (5 - len(sums))
            return cls(half_life_s, levels, sums, throughput, float(last) if last is not None else None)
        except (TypeError, ValueError, IndexError, AttributeError):
            return cls(half_life_s=half_life_s)


def load_per_replica(rps: FloatArray, ready: FloatArray) -> FloatArray:
    """Per-second rps divided by the ready replicas (NaN where none was ready)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ready > 0, rps / ready, np.nan)


def serving_through(ready: FloatArray) -> FloatArray:
    """The replicas that served through each second: the fewer of its ready count and the one before (the count is
    taken as the second closes; a replica that joined during it served only its end, and a second overloaded on two
    replicas until a third joined must not count as bad at the load of three)."""
    before = np.concatenate((ready[:1], ready[:-1]))
    return np.fmin(ready, before)


def learn(
    evidence: CapacityEvidence,
    timestamps: FloatArray,
    rps: FloatArray,
    ready: FloatArray,
    latency_p95_ms: FloatArray,
    queue_length: FloatArray,
    cpu_percent: FloatArray,
    served: FloatArray | None = None,
    *,
    slo_p95_ms: float,
    cpu_saturation_percent: float,
    half_life_s: float,
) -> LearnedCapacity | None:
    """Add the complete seconds (up to the last measured rate) to the evidence; the estimate after. The live loop
    and the simulator both call this with their per-second observations."""
    measured = np.flatnonzero(np.isfinite(rps))
    if measured.size:
        end = int(measured[-1]) + 1
        evidence.half_life_s = half_life_s
        evidence.add(
            timestamps[:end],
            load_per_replica(rps[:end], serving_through(ready[:end])),
            latency_p95_ms[:end],
            queue_length[:end],
            cpu_percent[:end],
            load_per_replica(served[:end], ready[:end]) if served is not None and len(served) else None,
            slo_p95_ms=slo_p95_ms,
        )
    return evidence.estimate(cpu_saturation_percent=cpu_saturation_percent)
