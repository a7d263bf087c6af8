"""Values that cross ``decide()``'s border: what it sees (observations, forecast, state) and what it returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from controller.capacity import LearnedCapacity
from controller.overrides import OverrideValue

FloatArray = npt.NDArray[np.float64]


def _empty() -> FloatArray:
    return np.empty(0, dtype=np.float64)


def _as_float_array(values: object) -> FloatArray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


@dataclass(frozen=True)
class Observations:
    """Recent live metrics of one deployment and the operator's overrides, as plain numbers.

    Each metric window holds one value per second, oldest first; the last element is the second that ends at
    ``last_sample_ts``. ``NaN`` marks a missing second; an empty array means the metric is not measured.
    ``cpu_percent`` and ``memory_percent`` are means over ready replicas (100 = fully used).
    """

    current_replicas: int  # replicas asked for now (the backend's spec), ready or not
    ready_replicas: int
    rps: FloatArray = field(default_factory=_empty)
    latency_p95_ms: FloatArray = field(default_factory=_empty)
    cpu_percent: FloatArray = field(default_factory=_empty)
    memory_percent: FloatArray = field(default_factory=_empty)
    queue_length: FloatArray = field(default_factory=_empty)
    last_sample_ts: float | None = None  # epoch seconds of the newest sample; None: no metrics at all
    replica_startup_s: float | None = None  # measured from replica events; None: not measured yet
    overrides: tuple[OverrideValue, ...] = ()  # the deployment's overrides; decide() keeps the active ones
    learned_capacity: LearnedCapacity | None = None  # what the deployment's evidence says (controller/capacity.py)
    held_requests: int = 0  # requests the activator holds right now for this deployment (none ready to take them)

    def __post_init__(self) -> None:
        for name in ("rps", "latency_p95_ms", "cpu_percent", "memory_percent", "queue_length"):
            object.__setattr__(self, name, _as_float_array(getattr(self, name)))
        object.__setattr__(self, "overrides", tuple(self.overrides))


@dataclass(frozen=True)
class ForecastInput:
    """A request-rate forecast (rps) as ``decide()`` needs it: intervals starting at ``target_ts``.

    ``history_peak_rps`` is the highest rate in the history the model was fitted on; with the recent observed peak
    it is the reference for rejecting absurd forecasts. ``history_s`` is how much history it was fitted on: a
    forecast from less than the policy's ``forecast_min_history_s`` is ignored.
    """

    created_at: float  # epoch seconds the forecast was made (its origin)
    target_ts: FloatArray  # start of each forecast interval, epoch seconds, increasing
    upper: FloatArray  # upper quantile of the rate in each interval, rps
    step_s: float
    point: FloatArray | None = None
    lower: FloatArray | None = None
    model: str = ""
    history_peak_rps: float | None = None
    history_s: float | None = None  # seconds of history the model was fitted on; None: unknown (not checked)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_ts", _as_float_array(self.target_ts))
        object.__setattr__(self, "upper", _as_float_array(self.upper))
        if self.target_ts.shape != self.upper.shape:
            raise ValueError("target_ts and upper must have the same length")


@dataclass(frozen=True)
class DecisionState:
    """What ``decide()`` remembers between calls; the caller stores it and passes it back (never mutated)."""

    recommendations: tuple[
        tuple[float, int], ...
    ] = ()  # (time, recommendation) inside the stabilisation window
    panic_triggered_at: float | None = None  # last time the panic condition held; None: not panicking
    panic_peak: int = 0  # highest panic recommendation since panic began (Knative keeps it)
    last_scale_ts: float | None = None  # last time the decided count differed from the current one
    capacity_probe: tuple[float, float] | None = None  # (capacity probed, since when) while learning upward
    idle_since: float | None = None  # first second (epoch s) of the current stretch without traffic; None: traffic
    next_wake_at: float | None = None  # when the wake-up step plans to wake the deployment at zero (for display)


@dataclass(frozen=True)
class Reason:
    """One step's effect on the count: ``step`` names it, ``message`` says why, in words a user reads."""

    step: str
    message: str
    before: int | None = None
    after: int | None = None

    def __str__(self) -> str:
        return f"{self.step}: {self.message}"


@dataclass(frozen=True)
class Placement:
    """How a total is split across capacity pools (controller/placement.py).

    ``counts`` are the replicas wanted per pool that will still serve (replicas under an interruption notice are
    not in them); ``leaving`` the replicas per pool that have a notice and still run until they go, so a pool's
    backend holds ``counts + leaving`` (``scale_counts``) until then.
    """

    counts: dict[str, int]
    leaving: dict[str, int] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    unplaced: int = 0  # replicas no pool had room for
    non_spot: int | None = None  # the spot bound: replicas reserved and on-demand keep (None: no spot pool)
    held: int = 0  # replicas in ``counts`` kept only until the replicas replacing them are ready (make-before-break)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def scale_counts(self) -> dict[str, int]:
        """What each pool's backend is asked to hold now: the wanted replicas plus the ones still leaving."""
        return {name: n + self.leaving.get(name, 0) for name, n in self.counts.items()}

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"counts": dict(self.counts), "leaving": dict(self.leaving), "unplaced": self.unplaced}
        if self.non_spot is not None:
            out["non_spot"] = self.non_spot  # the cost plan splits the history by it
        if self.held:
            out["held"] = self.held
        return out


@dataclass(frozen=True)
class Decision:
    """The result of one ``decide()`` call.

    ``desired`` is always within the policy's [min, max]; ``act`` is False under a dry-run override (log, never
    act); ``source`` names the step that set the final count (e.g. ``predictive``, ``reactive``, ``panic``,
    ``stabilised``, ``pin``).
    """

    desired: int
    reasons: list[Reason]
    new_state: DecisionState
    source: str
    act: bool = True
    predictive: int | None = None  # the predictive recommendation, None when the forecast was not used
    reactive: int | None = None
    forecast_upper_rps: float | None = None  # the upper band's peak over the window, when used
    lead_time_s: float = math.nan
    planned_utilisation: float | None = None  # fraction of capacity the upper band was planned at, when used
    capacity_rps: float = math.nan  # the per-replica capacity this decision used (configured or learned)
    idle_since: float | None = None  # first second of the current stretch without traffic (epoch s), if idle
    next_wake_at: float | None = None  # at (or going to) zero: when the forecast says to wake; None: not planned
    placement: Placement | None = None  # set by controller.placement.with_placement, right after decide()

    @property
    def reason_texts(self) -> list[str]:
        return [str(r) for r in self.reasons]
