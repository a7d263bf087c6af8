"""What the demo measures while it runs and afterwards, read from the store the stack writes to."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, select

from prewarm import metric_names as m
from prewarm.db.models import Deployment, ForecastPoint, ForecastRun, ReplicaEvent
from prewarm.db.store import MetricsStore

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LiveSnapshot:
    rps: float
    p95_ms: float
    ready: float
    forecast_upper_rps: float


def snapshot(store: MetricsStore, deployment: str, now: float) -> LiveSnapshot:
    """The latest per-second figures the gateway stored, and the forecast's upper band for ``now``."""

    def latest(metric: str) -> float:
        _stamps, values = store.read_range(
            deployment, metric, datetime.fromtimestamp(now - 5, UTC), datetime.fromtimestamp(now + 1, UTC)
        )
        return float(values[-1]) if len(values) else math.nan

    return LiveSnapshot(
        rps=latest(m.REQUESTS_RPS),
        p95_ms=latest(m.LATENCY_P95_MS),
        ready=latest(m.READY_REPLICAS),
        forecast_upper_rps=forecast_upper_at(store.engine, deployment, now),
    )


def forecast_upper_at(engine: Engine, deployment: str, ts: float) -> float:
    """The upper band for the interval containing ``ts`` from the newest forecast that covers it (NaN: none)."""
    moment = datetime.fromtimestamp(ts, UTC)
    with engine.connect() as connection:
        row = connection.execute(
            select(ForecastPoint.upper)
            .join(ForecastRun, ForecastRun.id == ForecastPoint.run_id)
            .join(Deployment, Deployment.id == ForecastRun.deployment_id)
            .where(Deployment.name == deployment, ForecastPoint.target_ts <= moment)
            .where(ForecastPoint.target_ts > datetime.fromtimestamp(ts - 2 * 60, UTC))
            .order_by(ForecastRun.created_at.desc(), ForecastPoint.target_ts.desc())
            .limit(1)
        ).first()
    return float(row[0]) if row is not None else math.nan


def billed_replica_seconds(engine: Engine, deployment: str, start: float, end: float) -> FloatArray:
    """Replicas paid for in each second of ``[start, end)``: from each replica's start to its stop (or now)."""
    seconds = max(0, math.ceil(end - start))
    billed = np.zeros(seconds)
    with engine.connect() as connection:
        rows = connection.execute(
            select(ReplicaEvent.replica, ReplicaEvent.event, ReplicaEvent.ts)
            .join(Deployment, Deployment.id == ReplicaEvent.deployment_id)
            .where(Deployment.name == deployment)
            .order_by(ReplicaEvent.ts)
        ).all()
    started: dict[str, float] = {}
    spans: list[tuple[float, float]] = []
    for replica, event, ts in rows:
        moment = ts.timestamp()
        if event in ("started", "adopted"):
            started.setdefault(replica, moment)
        elif event in ("stopped", "failed") and replica in started:
            spans.append((started.pop(replica), moment))
    spans += [(begin, end) for begin in started.values()]
    for begin, finish in spans:
        lo, hi = max(begin, start) - start, min(finish, end) - start
        if hi <= lo:
            continue
        index = np.arange(seconds)
        billed += np.clip(np.minimum(index + 1, hi) - np.maximum(index, lo), 0, 1)
    return billed


def replica_startup_s(engine: Engine, deployment: str) -> float | None:
    """Median startup seconds (process start to ready) of the deployment's replicas."""
    with engine.connect() as connection:
        durations = connection.execute(
            select(ReplicaEvent.duration_s)
            .join(Deployment, Deployment.id == ReplicaEvent.deployment_id)
            .where(Deployment.name == deployment, ReplicaEvent.event == "ready")
        ).scalars()
        found = [d for d in durations if d is not None]
    return float(np.median(found)) if found else None


def per_second_series(
    store: MetricsStore, deployment: str, metric: str, start: float, seconds: int
) -> FloatArray:
    """A stored per-second metric over ``[start, start + seconds)``; NaN where nothing was stored."""
    series = store.resample(
        deployment,
        metric,
        datetime.fromtimestamp(start, UTC),
        datetime.fromtimestamp(start + seconds, UTC),
        1.0,
        "mean",
    )
    return series.to_numpy(dtype=np.float64)[:seconds]


def violating_seconds(intended_s: FloatArray, latency_s: FloatArray, status: FloatArray, seconds: int,
                      slo_ms: float) -> npt.NDArray[np.bool_]:  # fmt: skip
    """Per replay second: the p95 of requests meant to be sent in it is over the SLO, or one of them failed."""
    violating = np.zeros(seconds, dtype=bool)
    second = np.floor(intended_s).astype(np.int64)
    for s in range(seconds):
        mask = second == s
        if not mask.any():
            continue
        failed = (status[mask] != 200).any()
        latencies = latency_s[mask]
        latencies = np.where(np.isnan(latencies), np.inf, latencies)
        violating[s] = failed or float(np.percentile(latencies, 95)) * 1000.0 > slo_ms
    return violating
