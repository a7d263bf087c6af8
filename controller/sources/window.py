"""A window of observations: several metrics of one deployment on one evenly spaced time axis.

Every observation source (the metrics store, Prometheus) returns this, and the loop turns it into ``decide()``'s
``Observations``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from prewarm.db.store import Sample

FloatArray = npt.NDArray[np.float64]


def window_axis(end: datetime | float, duration_s: float, step_s: float) -> FloatArray:
    """The step-aligned axis ``(end - duration_s, end]``: epoch seconds, oldest first, ending at floor(end)."""
    end_s = end.timestamp() if isinstance(end, datetime) else float(end)
    last = math.floor(end_s / step_s) * step_s
    points = max(1, round(duration_s / step_s))
    return last - (points - 1) * step_s + step_s * np.arange(points, dtype=np.float64)


@dataclass(frozen=True)
class ObservationWindow:
    """Values of several metrics of one deployment on one evenly spaced time axis (epoch seconds)."""

    deployment: str
    timestamps: FloatArray
    values: Mapping[str, FloatArray]  # metric name (prewarm.metric_names) -> values, NaN where unknown
    errors: tuple[str, ...] = field(default=())  # one line per failed query; empty when all answered

    @property
    def complete(self) -> bool:
        """Every query answered (values may still be NaN where Prometheus had no samples)."""
        return not self.errors

    def get(self, metric: str) -> FloatArray:
        """The values of ``metric``, all NaN when it was not queried or its query failed."""
        values = self.values.get(metric)
        return values if values is not None else np.full(self.timestamps.shape, np.nan)

    def latest(self, metric: str) -> float:
        """The most recent finite value of ``metric``, NaN when there is none."""
        values = self.get(metric)
        finite = np.flatnonzero(np.isfinite(values))
        return float(values[finite[-1]]) if finite.size else math.nan

    def to_samples(self) -> list[Sample]:
        """The finite values as metrics-store samples, to store Prometheus observations like any others."""
        from prewarm.db.store import Sample

        samples: list[Sample] = []
        for metric, values in self.values.items():
            finite = np.isfinite(values)
            samples.extend(
                Sample(self.deployment, metric, float(ts), float(value))
                for ts, value in zip(self.timestamps[finite], values[finite], strict=True)
            )
        return samples
