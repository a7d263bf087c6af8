"""Observations from prewarm's own metrics store (where the gateway's collector writes per-second samples)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from controller.sources.prometheus import PrometheusSource
from controller.sources.window import FloatArray, ObservationWindow, window_axis
from prewarm import metric_names as m
from prewarm.db.store import InvalidSampleError, MetricsStore, UnknownDeploymentError

logger = logging.getLogger(__name__)

OBSERVED_METRICS = (
    m.REQUESTS_RPS,
    m.LATENCY_P95_MS,
    m.CPU_PERCENT,
    m.MEMORY_PERCENT,
    m.QUEUE_LENGTH,
    m.IN_FLIGHT,
    m.READY_REPLICAS,
)


class StoreSource:
    """Reads per-second windows of the decision's metrics from the metrics store; never raises on I/O errors."""

    def __init__(self, store: MetricsStore, metrics: tuple[str, ...] = OBSERVED_METRICS) -> None:
        self.store = store
        self.metrics = metrics

    def window(
        self, deployment: str, end: datetime | float, duration_s: float, step_s: float = 1.0
    ) -> ObservationWindow:
        """Every metric over ``(end - duration_s, end]`` at ``step_s``; NaN where no sample was stored."""
        timestamps = window_axis(end, duration_s, step_s)
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
    history from the store) learns from clusters whose metrics live in Prometheus."""

    def __init__(self, source: PrometheusSource, store: MetricsStore) -> None:
        self.source = source
        self.store = store

    def window(
        self, deployment: str, end: datetime | float, duration_s: float, step_s: float = 1.0
    ) -> ObservationWindow:
        window = self.source.window(deployment, end, duration_s, step_s)
        try:
            self.store.insert_samples(window.to_samples())
        except (SQLAlchemyError, UnknownDeploymentError, InvalidSampleError) as error:
            logger.warning("could not store Prometheus observations of %s: %s", deployment, error)
        return window
