"""Observations from prewarm's own metrics store (where the gateway's collector writes per-second samples).

The loop decides each deployment every few seconds from the last minute of its samples. Reading that minute again
every time costs a query per metric and deployment and re-reads what is already known, so ``StoreSource`` keeps
each deployment's recent seconds in memory: ``prepare()`` reads, for every deployment due in a pass, only the
seconds after what it already holds (minus ``late_s``, for samples that arrive late) in one query, and
``window()`` is then answered from memory. A deployment asked for without ``prepare()`` is read on the spot.
Values are per second (a second's last sample wins); a window's second without a sample is NaN.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy.exc import SQLAlchemyError

from controller.sources.prometheus import PrometheusSource
from controller.sources.window import FloatArray, ObservationWindow, window_axis
from prewarm import metric_names as m
from prewarm.db.store import InvalidSampleError, MetricsStore, Sample, UnknownDeploymentError

logger = logging.getLogger(__name__)

OBSERVED_METRICS = (
    m.REQUESTS_RPS,
    m.SERVED_RPS,
    m.LATENCY_P95_MS,
    m.CPU_PERCENT,
    m.MEMORY_PERCENT,
    m.QUEUE_LENGTH,
    m.IN_FLIGHT,
    m.READY_REPLICAS,
)


@dataclass
class _Recent:
    """A deployment's last ``capacity`` seconds per metric, in rings indexed by epoch second modulo capacity."""

    capacity: int
    metrics: tuple[str, ...]
    read_until: float = -math.inf  # every sample stamped before this (minus the lateness) has been read
    stamps: npt.NDArray[np.int64] = field(init=False)
    values: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.stamps = np.full((len(self.metrics), self.capacity), -1, dtype=np.int64)
        self.values = np.full((len(self.metrics), self.capacity), np.nan)

    def put(self, metric_index: npt.NDArray[np.int64], ts: FloatArray, value: FloatArray) -> None:
        """Samples in any order; in each (metric, second) the newest sample wins."""
        order = np.argsort(ts, kind="stable")
        metric_index, ts, value = metric_index[order], ts[order], value[order]
        seconds = np.floor(ts).astype(np.int64)
        slots = seconds % self.capacity
        key = metric_index * self.capacity + slots
        _, from_end = np.unique(key[::-1], return_index=True)  # the last (newest) sample of each slot
        newest = key.size - 1 - from_end
        self.stamps[metric_index[newest], slots[newest]] = seconds[newest]
        self.values[metric_index[newest], slots[newest]] = value[newest]

    def window(self, axis: FloatArray) -> dict[str, FloatArray]:
        seconds = axis.astype(np.int64)
        slots = seconds % self.capacity
        held = self.stamps[:, slots] == seconds
        values = np.where(held, self.values[:, slots], np.nan)
        return {metric: values[i] for i, metric in enumerate(self.metrics)}


class StoreSource:
    """Per-second windows of the decision's metrics from the metrics store; never raises on I/O errors."""

    def __init__(
        self,
        store: MetricsStore,
        metrics: tuple[str, ...] = OBSERVED_METRICS,
        late_s: float = 15.0,
        capacity_s: int = 600,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.late_s = late_s
        self.capacity_s = capacity_s
        self._index = {metric: i for i, metric in enumerate(metrics)}
        self._recent: dict[str, _Recent] = {}
        self._lock = threading.Lock()  # windows are built in worker threads while the pass thread prepares
        self.rows_read = 0

    def prepare(self, deployments: Sequence[tuple[int, str]], end: float, duration_s: float) -> None:
        """Read the new seconds of every (id, name) in one query; raises SQLAlchemyError (the loop handles it)."""
        capacity = max(self.capacity_s, math.ceil(duration_s) + math.ceil(self.late_s) + 2)
        since: dict[int, float] = {}
        names: dict[int, str] = {}
        with self._lock:
            for deployment_id, name in deployments:
                recent = self._recent.get(name)
                if recent is None or recent.capacity < capacity or recent.read_until > end:
                    recent = self._recent[name] = _Recent(capacity, self.metrics)
                first = end - duration_s - 1
                since[deployment_id] = max(first, recent.read_until - self.late_s)
                names[deployment_id] = name
        rows = self.store.read_recent(since, self.metrics, end + 1)
        with self._lock:
            recents = {deployment_id: self._recent[name] for deployment_id, name in names.items()}
        # The deployments prepared are not being decided now (a busy one is not due): fill their rings unlocked.
        if rows:
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            index = self._index
            metrics = np.fromiter((index[r[1]] for r in rows), dtype=np.int64, count=len(rows))
            ts = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
            values = np.fromiter((r[3] for r in rows), dtype=np.float64, count=len(rows))
            order = np.argsort(ids, kind="stable")
            ids, metrics, ts, values = ids[order], metrics[order], ts[order], values[order]
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            for start, stop in zip(starts, np.r_[starts[1:], ids.size], strict=True):
                recents[int(ids[start])].put(metrics[start:stop], ts[start:stop], values[start:stop])
        for recent in recents.values():
            recent.read_until = end + 1
        self.rows_read += len(rows)

    def forget(self, deployment: str) -> None:
        with self._lock:
            self._recent.pop(deployment, None)

    def window(
        self, deployment: str, end: datetime | float, duration_s: float, step_s: float = 1.0
    ) -> ObservationWindow:
        """Every metric over ``(end - duration_s, end]`` at ``step_s``; NaN where no sample was stored."""
        timestamps = window_axis(end, duration_s, step_s)
        end_s = end.timestamp() if isinstance(end, datetime) else float(end)
        with self._lock:
            recent = self._recent.get(deployment)
            covered = (
                step_s == 1.0
                and recent is not None
                and recent.read_until >= timestamps[-1] + 1
                and recent.capacity >= len(timestamps)
            )
            if covered and recent is not None:
                return ObservationWindow(deployment, timestamps, recent.window(timestamps))
        return self._read_window(deployment, timestamps, end_s, step_s)

    def _read_window(
        self, deployment: str, timestamps: FloatArray, end_s: float, step_s: float
    ) -> ObservationWindow:
        points = len(timestamps)
        start_dt = datetime.fromtimestamp(float(timestamps[0]), UTC)
        end_dt = datetime.fromtimestamp(float(timestamps[-1]) + step_s, UTC)
        values: dict[str, FloatArray] = {}
        errors: list[str] = []
        for metric in self.metrics:
            try:
                series = self.store.resample(deployment, metric, start_dt, end_dt, step_s, how="mean")
                values[metric] = series.to_numpy(dtype=np.float64)[:points]
            except (SQLAlchemyError, UnknownDeploymentError) as error:
                errors.append(f"{metric}: {type(error).__name__}: {error}")
                values[metric] = np.full(points, np.nan)
        if errors:
            logger.warning("metrics store read failed for %s: %s", deployment, errors[0])
        return ObservationWindow(deployment, timestamps, values, tuple(errors))


class RecordingSource:
    """Reads windows from Prometheus and keeps what it read in the metrics store, so the forecaster (which reads
    history from the store) learns from clusters whose metrics live in Prometheus. Windows overlap from one
    decision to the next: only (metric, second) pairs not written before are written."""

    def __init__(self, source: PrometheusSource, store: MetricsStore) -> None:
        self.source = source
        self.store = store
        self._written: dict[str, set[tuple[str, float]]] = {}
        self._lock = threading.Lock()

    def window(
        self, deployment: str, end: datetime | float, duration_s: float, step_s: float = 1.0
    ) -> ObservationWindow:
        window = self.source.window(deployment, end, duration_s, step_s)
        oldest = float(window.timestamps[0]) if window.timestamps.size else math.inf
        with self._lock:
            written = {key for key in self._written.get(deployment, set()) if key[1] >= oldest}
        samples = [s for s in window.to_samples() if (s.metric, s.ts) not in written]
        try:
            self.store.insert_samples(samples)
        except (SQLAlchemyError, UnknownDeploymentError, InvalidSampleError) as error:
            logger.warning("could not store Prometheus observations of %s: %s", deployment, error)
            return window
        written.update((s.metric, s.ts) for s in samples)
        with self._lock:
            self._written[deployment] = written
        return window

    def forget(self, deployment: str) -> None:
        with self._lock:
            self._written.pop(deployment, None)


__all__ = ["OBSERVED_METRICS", "RecordingSource", "Sample", "StoreSource"]
