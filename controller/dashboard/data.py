"""What the dashboard shows, read straight from the database: chart series on one time grid, and each deployment's
policy, overrides and latest decisions.

Every function takes the clock (``now``, epoch seconds) as an argument, so a test or a replay can look at any time.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from controller import cost_queries, repository
from controller.cost import cost_over, money_per_hour
from controller.policy import ScalingPolicy
from prewarm import metric_names
from prewarm.db.models import (
    Deployment,
    DeploymentStatus,
    ForecastPoint,
    ForecastRun,
    Override,
    Policy,
    ScalingDecision,
)
from prewarm.db.store import MetricsStore, resample_samples

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

NICE_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
TARGET_BINS = 360  # about one bin per two pixels of a laptop-wide chart
FORECAST_LOOKBACK = timedelta(days=1)  # forecast runs older than this before the window are not looked at
AHEAD_FRACTION = 0.25  # the chart shows the forecast this share of the history window into the future


class SeriesPayload(BaseModel):
    """The chart data of one deployment: every list is aligned with ``t`` (bin starts, epoch seconds).

    ``null`` marks a bin without data. Replica counts come from the decision log (``desired``, ``current``: what
    the controller asked for and what it saw) and from the ``ready_replicas`` metric.
    """

    deployment: str
    now: float
    start: float
    end: float
    step_s: float
    t: list[float]
    rps: list[float | None]
    forecast_point: list[float | None]
    forecast_lower: list[float | None]
    forecast_upper: list[float | None]
    replicas_desired: list[float | None]
    replicas_current: list[float | None]
    replicas_ready: list[float | None]
    forecast_model: str | None
    forecast_created_at: float | None


@dataclass(frozen=True)
class TimeGrid:
    """Bins ``[start + k*step_s, start + (k+1)*step_s)`` covering ``[start, end)``; ``start`` is step-aligned so the
    bins stay the same from one poll to the next."""

    start: float
    end: float
    step_s: float

    @property
    def stamps(self) -> FloatArray:
        count = max(0, math.ceil((self.end - self.start) / self.step_s - 1e-9))
        return self.start + np.arange(count, dtype=np.float64) * self.step_s

    def bin(self, stamps: FloatArray, values: FloatArray, how: str) -> FloatArray:
        return resample_samples(stamps, values, self.start, self.end, self.step_s, how).to_numpy()  # type: ignore[arg-type]


def time_grid(now: float, minutes: float) -> TimeGrid:
    """The grid for ``minutes`` of history before ``now`` plus a quarter of that ahead (for the forecast)."""
    history_s = minutes * 60.0
    span_s = history_s * (1.0 + AHEAD_FRACTION)
    step_s = float(next((s for s in NICE_STEPS_S if span_s / s <= TARGET_BINS), NICE_STEPS_S[-1]))
    start = math.floor((now - history_s) / step_s) * step_s
    end = math.ceil((now + history_s * AHEAD_FRACTION) / step_s) * step_s
    return TimeGrid(start=start, end=end, step_s=step_s)


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _json_list(values: FloatArray) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), 4) for v in values]


def _forward_fill(values: FloatArray) -> FloatArray:
    """Carry each value forward over the NaN bins up to the next value (a count holds until it changes)."""
    filled = values.copy()
    positions = np.where(np.isfinite(filled), np.arange(len(filled)), -1)
    carried = np.maximum.accumulate(positions) if len(positions) else positions
    has_value = carried >= 0
    filled[has_value] = filled[carried[has_value]]
    return filled


def metric_series(store: MetricsStore, deployment: str, metric: str, grid: TimeGrid, how: str) -> FloatArray:
    """One stored metric binned onto the grid (samples up to the grid's end; minute rollups where the samples
    have been rolled up, so long windows stay cheap and show what is older than the samples' retention)."""
    return store.resample(deployment, metric, _utc(grid.start), _utc(grid.end), grid.step_s, how).to_numpy()  # type: ignore[arg-type]


def replica_series(
    session: Session, deployment_id: int, grid: TimeGrid, now: float
) -> tuple[FloatArray, FloatArray]:
    """Desired and current replicas per bin from the decision log, held from one decision to the next.

    The decision just before the window gives the count at its start; nothing is drawn after the newest decision
    (a controller that stopped deciding should not look like one that keeps the count).
    """
    start, until = _utc(grid.start), _utc(min(now, grid.end))
    rows = session.execute(
        select(ScalingDecision.ts, ScalingDecision.desired, ScalingDecision.current)
        .where(
            ScalingDecision.deployment_id == deployment_id,
            ScalingDecision.ts >= start,
            ScalingDecision.ts <= until,
        )
        .order_by(ScalingDecision.ts, ScalingDecision.id)
    ).all()
    before = session.execute(
        select(ScalingDecision.ts, ScalingDecision.desired, ScalingDecision.current)
        .where(ScalingDecision.deployment_id == deployment_id, ScalingDecision.ts < start)
        .order_by(ScalingDecision.ts.desc(), ScalingDecision.id.desc())
        .limit(1)
    ).all()
    empty = np.full(len(grid.stamps), np.nan)
    if not rows and not before:
        return empty, empty.copy()
    stamps = np.array([max(r.ts.timestamp(), grid.start) for r in [*before, *rows]], dtype=np.float64)
    desired = grid.bin(stamps, np.array([r.desired for r in [*before, *rows]], dtype=np.float64), "last")
    current = grid.bin(stamps, np.array([r.current for r in [*before, *rows]], dtype=np.float64), "last")
    last_bin = int(np.floor((stamps[-1] - grid.start) / grid.step_s))
    desired, current = _forward_fill(desired), _forward_fill(current)
    desired[last_bin + 1 :] = np.nan
    current[last_bin + 1 :] = np.nan
    return desired, current


def forecast_series(
    session: Session, deployment_id: int, grid: TimeGrid
) -> tuple[FloatArray, FloatArray, FloatArray, ForecastRun | None]:
    """Point, lower and upper forecast per bin: for each instant, the newest forecast that covered it.

    Returns the newest run too (its model is named on the chart).
    """
    rows = session.execute(
        select(
            ForecastPoint.target_ts,
            ForecastPoint.point,
            ForecastPoint.lower,
            ForecastPoint.upper,
        )
        .join(ForecastRun, ForecastRun.id == ForecastPoint.run_id)
        .where(
            ForecastRun.deployment_id == deployment_id,
            ForecastRun.created_at >= _utc(grid.start) - FORECAST_LOOKBACK,
            ForecastPoint.target_ts >= _utc(grid.start),
            ForecastPoint.target_ts < _utc(grid.end),
        )
        .order_by(ForecastRun.created_at, ForecastRun.id)
    ).all()
    newest: dict[float, tuple[float, float, float]] = {}
    for row in rows:  # later runs overwrite earlier ones
        newest[row.target_ts.timestamp()] = (row.point, row.lower, row.upper)
    latest_run = session.scalar(
        select(ForecastRun)
        .where(ForecastRun.deployment_id == deployment_id)
        .order_by(ForecastRun.created_at.desc(), ForecastRun.id.desc())
        .limit(1)
    )
    stamps = np.array(sorted(newest), dtype=np.float64)
    values = np.array([newest[s] for s in sorted(newest)], dtype=np.float64).reshape(-1, 3)
    point, lower, upper = (grid.bin(stamps, values[:, i], "mean") for i in range(3))
    return point, lower, upper, latest_run


def deployment_series(
    engine: Engine, session: Session, name: str, *, now: float, minutes: float
) -> SeriesPayload:
    """All chart series of one deployment for ``minutes`` before ``now``; raises repository.NotFoundError."""
    deployment = repository.get_deployment(session, name)
    grid = time_grid(now, minutes)
    store = MetricsStore(engine)
    rps = metric_series(store, name, metric_names.REQUESTS_RPS, grid, "mean")
    ready = metric_series(store, name, metric_names.READY_REPLICAS, grid, "last")
    desired, current = replica_series(session, deployment.id, grid, now)
    point, lower, upper, run = forecast_series(session, deployment.id, grid)
    return SeriesPayload(
        deployment=name,
        now=now,
        start=grid.start,
        end=grid.end,
        step_s=grid.step_s,
        t=[float(s) for s in grid.stamps],
        rps=_json_list(rps),
        forecast_point=_json_list(point),
        forecast_lower=_json_list(lower),
        forecast_upper=_json_list(upper),
        replicas_desired=_json_list(desired),
        replicas_current=_json_list(current),
        replicas_ready=_json_list(ready),
        forecast_model=run.model_name if run else None,
        forecast_created_at=run.created_at.timestamp() if run else None,
    )


# -- the side panel: policy, overrides, decisions -------------------------------------------------------------


@dataclass(frozen=True)
class DecisionView:
    """One logged decision as the dashboard lists it."""

    ts: datetime
    current: int
    desired: int
    applied: bool
    source: str
    reasons: list[str]


@dataclass(frozen=True)
class OverrideView:
    """One override in force."""

    id: int
    kind: str
    value: int | None
    ends_at: datetime
    reason: str
    author: str


@dataclass(frozen=True)
class ReplicasView:
    """The replicas as the owning controller last reported them, and at zero since when and until when."""

    ready: int | None
    desired: int | None
    idle_since: datetime | None
    next_wake_at: datetime | None

    @property
    def at_zero(self) -> bool:
        return self.desired == 0


@dataclass(frozen=True)
class PanelView:
    """Everything beside the chart of one deployment."""

    name: str
    model: str
    backend: str
    min_replicas: int
    max_replicas: int
    policy_version: int | None
    policy: dict[str, Any]
    overrides: list[OverrideView]
    latest: DecisionView | None
    changes: list[DecisionView]  # newest first: decisions that changed the count
    capacity: dict[str, Any] | None = None  # the owner's stored capacity view: in use, mode, learned estimate
    replicas: ReplicasView | None = None  # from the live status row; None: no controller reported yet
    cost: CostView | None = None


@dataclass(frozen=True)
class CostView:
    """Cost beside the replicas: money per hour now by pool, and over the last day with its savings."""

    per_hour: dict[str, float]
    window_h: float
    total: float
    saving_vs_on_demand: float | None
    saving_vs_static_peak: float | None


COST_WINDOW_S = 86400.0


def cost_view(session: Session, deployment_id: int, spec: dict[str, Any], now: float) -> CostView | None:
    """The deployment's cost from its decision log (None when the stored policy no longer validates)."""
    try:
        policy = ScalingPolicy.model_validate(spec)
    except ValueError:
        return None
    since = now - COST_WINDOW_S
    points = cost_queries.cost_points(session, deployment_id, _utc(since), _utc(now))
    if not points:
        return None
    start = max(since, min(p.ts for p in points))
    report = cost_over(policy, points, start, now)
    return CostView(
        per_hour=money_per_hour(policy, points[-1].counts),
        window_h=(now - start) / 3600.0,
        total=report.total,
        saving_vs_on_demand=report.saving(report.on_demand_money),
        saving_vs_static_peak=report.saving(report.static_peak_money),
    )


def reason_text(reason: Any) -> str:
    """A stored reason (a string, or a ``{step, message}`` dict from older writers) as one line of text."""
    if isinstance(reason, str):
        return reason
    if isinstance(reason, dict) and "message" in reason:
        step = reason.get("step")
        return f"{step}: {reason['message']}" if step else str(reason["message"])
    return json.dumps(reason, default=str)


def _decision_view(row: ScalingDecision) -> DecisionView:
    return DecisionView(
        ts=row.ts,
        current=row.current,
        desired=row.desired,
        applied=row.applied,
        source=row.source,
        reasons=[reason_text(r) for r in row.reasons or []],
    )


def _override_view(row: Override) -> OverrideView:
    return OverrideView(
        id=row.id,
        kind=row.kind,
        value=row.value,
        ends_at=repository.effective_end(row),
        reason=row.reason,
        author=row.author,
    )


def deployment_panel(session: Session, name: str, *, now: float, changes: int = 10) -> PanelView:
    """The policy, active overrides, newest decision and the last ``changes`` scaling changes of a deployment."""
    deployment = repository.get_deployment(session, name)
    # The stored spec as written (not re-validated): the dashboard shows what is there, even from an older schema.
    policy = session.scalar(
        select(Policy).where(Policy.deployment_id == deployment.id).order_by(Policy.version.desc()).limit(1)
    )
    overrides = repository.list_overrides(session, deployment.id, active_at=_utc(now))
    change_rows = session.scalars(
        select(ScalingDecision)
        .where(
            ScalingDecision.deployment_id == deployment.id,
            ScalingDecision.desired != ScalingDecision.current,
        )
        .order_by(ScalingDecision.ts.desc(), ScalingDecision.id.desc())
        .limit(changes)
    ).all()
    latest = repository.latest_decision(session, deployment.id)
    status = session.get(DeploymentStatus, deployment.id)
    replicas = (
        ReplicasView(status.ready_replicas, status.desired_replicas, status.idle_since, status.next_wake_at)
        if status is not None
        else None
    )
    return PanelView(
        name=deployment.name,
        model=deployment.model,
        backend=deployment.backend,
        min_replicas=deployment.min_replicas,
        max_replicas=deployment.max_replicas,
        policy_version=policy.version if policy else None,
        policy=dict(policy.spec) if policy else {},
        overrides=[_override_view(o) for o in overrides],
        latest=_decision_view(latest) if latest else None,
        changes=[_decision_view(r) for r in change_rows],
        capacity=dict(status.capacity) if status is not None and status.capacity else None,
        replicas=replicas,
        cost=cost_view(session, deployment.id, dict(policy.spec), now) if policy else None,
    )


def deployment_names(session: Session) -> list[str]:
    """Names of every deployment, sorted."""
    return list(session.scalars(select(Deployment.name).order_by(Deployment.name)))
