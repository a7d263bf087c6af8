"""Observations from Prometheus: per-second windows of request rate, p95 latency, CPU, memory and queue length.

Each metric is one PromQL template (``$selector`` and ``$window`` are substituted) evaluated with ``query_range``
at a fixed step, giving numpy arrays aligned on one time axis with NaN where Prometheus had no value. When
Prometheus is down or a query fails, the affected metrics come back as NaN and the window says it is incomplete:
the caller decides from what it has (``decide()`` keeps the current count without metrics), nothing raises.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from controller.sources.window import FloatArray, ObservationWindow, window_axis
from prewarm import metric_names as m

if TYPE_CHECKING:
    from prewarm.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_SELECTOR = 'deployment="$deployment"'
DEFAULT_RATE_WINDOW = "30s"
MAX_POINTS_PER_QUERY = 10_000  # Prometheus refuses more than 11,000 points per series in one query_range

# Metric names are those of the replica server (inference/metrics.py); the selector picks one deployment.
DEFAULT_QUERIES: Mapping[str, str] = {
    m.REQUESTS_RPS: 'sum(rate(prewarm_replica_requests_total{$selector, endpoint="infer"}[$window]))',
    m.ERRORS_RPS: 'sum(rate(prewarm_replica_requests_total{$selector, endpoint="infer", status=~"5.."}[$window]))',
    m.LATENCY_P95_MS: (
        "1000 * histogram_quantile(0.95, "
        "sum by (le) (rate(prewarm_replica_request_duration_seconds_bucket{$selector}[$window])))"
    ),
    m.CPU_PERCENT: "100 * avg(rate(prewarm_replica_cpu_seconds_total{$selector}[$window]))",
    m.MEMORY_BYTES: "avg(prewarm_replica_memory_bytes{$selector})",
    m.QUEUE_LENGTH: "sum(prewarm_replica_queue_depth{$selector})",
    m.IN_FLIGHT: "sum(prewarm_replica_in_flight_requests{$selector})",
    m.READY_REPLICAS: "sum(prewarm_replica_ready{$selector})",
}


def render_query(template: str, deployment: str, selector: str, rate_window: str) -> str:
    """A PromQL template with ``$selector`` (itself a template over ``$deployment``) and ``$window`` filled in."""
    quoted = deployment.replace("\\", "\\\\").replace('"', '\\"')  # stays one PromQL string literal
    label_selector = string.Template(selector).substitute(deployment=quoted)
    return string.Template(template).substitute(
        selector=label_selector, window=rate_window, deployment=quoted
    )


def fill_axis(result: Sequence[Mapping[str, Any]], start_s: float, step_s: float, points: int) -> FloatArray:
    """Place a ``query_range`` matrix result on the axis ``start_s + k * step_s``; the first series only."""
    values = np.full(points, np.nan)
    if not result:
        return values
    for ts, raw in result[0].get("values", []):
        index = round((float(ts) - start_s) / step_s)
        if 0 <= index < points:
            values[index] = float(raw)  # Prometheus writes "NaN", "+Inf" as strings; float() reads them
    return values


class PrometheusSource:
    """Reads observation windows for deployments from one Prometheus server via prometheus-api-client."""

    def __init__(
        self,
        url: str,
        queries: Mapping[str, str] | None = None,
        selector: str = DEFAULT_SELECTOR,
        rate_window: str = DEFAULT_RATE_WINDOW,
        timeout_s: float = 5.0,
        retries: int = 1,
    ) -> None:
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.url = url.rstrip("/")
        self.queries: Mapping[str, str] = dict(DEFAULT_QUERIES if queries is None else queries)
        self.selector = selector
        self.rate_window = rate_window
        self.timeout_s = timeout_s
        for metric, template in self.queries.items():  # fail at start-up on a broken template, not per query
            try:
                render_query(template, "x", selector, rate_window)
            except (KeyError, ValueError) as error:
                raise ValueError(
                    f"PromQL template for {metric!r} is invalid ({error}): {template}"
                ) from error
        retry = Retry(
            total=retries, backoff_factor=0.1, status_forcelist=(502, 503, 504), raise_on_status=False
        )
        self._client = PrometheusConnect(url=self.url, retry=retry, timeout=timeout_s)
        self._healthy = True

    @classmethod
    def from_settings(cls, settings: Settings) -> PrometheusSource:
        """The source configured by ``PREWARM_PROMETHEUS_*``; settings.prometheus_url must be set."""
        if not settings.prometheus_url:
            raise ValueError("PREWARM_PROMETHEUS_URL is not set")
        queries = {**DEFAULT_QUERIES, **settings.prometheus_queries}
        return cls(
            settings.prometheus_url,
            queries={metric: query for metric, query in queries.items() if query},  # "" switches a metric off
            selector=settings.prometheus_selector,
            rate_window=settings.prometheus_rate_window,
            timeout_s=settings.prometheus_timeout_s,
        )

    def window(
        self, deployment: str, end: datetime | float, duration_s: float, step_s: float = 1.0
    ) -> ObservationWindow:
        """Every configured metric over ``(end - duration_s, end]`` at ``step_s``, on a step-aligned axis."""
        if duration_s <= 0 or step_s < 1 or step_s != int(step_s):
            # The client sends start and end as whole seconds: only whole-second steps stay on the axis.
            raise ValueError("duration_s must be positive and step_s a whole number of seconds")
        timestamps = window_axis(end, duration_s, step_s)
        start, points = float(timestamps[0]), len(timestamps)
        values: dict[str, FloatArray] = {}
        errors: list[str] = []
        for metric, template in self.queries.items():
            query = render_query(template, deployment, self.selector, self.rate_window)
            try:
                values[metric] = self._range(query, start, step_s, points)
            except Exception as error:  # the source degrades on any client, HTTP or parse failure
                errors.append(f"{metric}: {type(error).__name__}: {error}")
                values[metric] = np.full(points, np.nan)
        self._note_health(deployment, errors)
        return ObservationWindow(deployment, timestamps, values, tuple(errors))

    def close(self) -> None:
        self._client.close()

    def _range(self, query: str, start: float, step_s: float, points: int) -> FloatArray:
        """One metric over the axis, in chunks the server accepts."""
        chunks: list[FloatArray] = []
        for first in range(0, points, MAX_POINTS_PER_QUERY):
            count = min(MAX_POINTS_PER_QUERY, points - first)
            chunk_start = start + first * step_s
            result = self._client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(chunk_start, UTC),
                end_time=datetime.fromtimestamp(chunk_start + (count - 1) * step_s, UTC),
                step=f"{step_s:g}",
            )
            if len(result) > 1:
                logger.warning(
                    "PromQL returned %d series, using the first; aggregate it: %s", len(result), query
                )
            chunks.append(fill_axis(result, chunk_start, step_s, count))
        return np.concatenate(chunks)

    def _note_health(self, deployment: str, errors: list[str]) -> None:
        """Log a failure when it starts (warning) and when it ends (info), not at every poll."""
        if errors and len(errors) == len(self.queries):
            if self._healthy:
                logger.warning(
                    "Prometheus at %s unavailable for %s, observations are NaN until it answers: %s",
                    self.url, deployment, errors[0],
                )  # fmt: skip
            self._healthy = False
            return
        for error in errors:
            logger.warning("Prometheus query failed for %s: %s", deployment, error)
        if not self._healthy:
            logger.info("Prometheus at %s answers again", self.url)
        self._healthy = True
