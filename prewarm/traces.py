"""Request-rate traces: CSV files with the header ``timestamp,requests`` (see data/traces/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

TRACES_DIR = Path(__file__).resolve().parent.parent / "data" / "traces"


class TraceFormatError(ValueError):
    """The file is not a valid trace; the message says what is wrong and where."""


@dataclass(frozen=True)
class Trace:
    """Evenly spaced request counts: ``requests[i]`` arrived in ``[timestamps[i], timestamps[i] + step_s)``."""

    name: str
    timestamps: npt.NDArray[np.int64]
    requests: npt.NDArray[np.float64]
    step_s: int

    @property
    def rates_rps(self) -> npt.NDArray[np.float64]:
        """Mean request rate of each interval, requests per second."""
        return self.requests / self.step_s

    @property
    def duration_s(self) -> int:
        return int(len(self.requests) * self.step_s)

    def scaled(self, factor: float) -> Trace:
        """The same trace with every count multiplied by ``factor``."""
        return Trace(self.name, self.timestamps, self.requests * factor, self.step_s)


def load_trace(path: str | Path) -> Trace:
    """Read and validate a trace file."""
    path = Path(path)
    try:
        with path.open() as handle:
            header = handle.readline().strip()
            if header != "timestamp,requests":
                raise TraceFormatError(f"{path}: header must be 'timestamp,requests', got {header!r}")
            data = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
    except OSError as error:
        raise TraceFormatError(f"{path}: cannot read trace: {error.strerror}") from error
    except ValueError as error:
        raise TraceFormatError(f"{path}: not numeric CSV: {error}") from error
    if data.shape[0] < 2 or data.shape[1] != 2:
        raise TraceFormatError(f"{path}: need at least two rows of 'timestamp,requests'")
    timestamps = data[:, 0].astype(np.int64)
    requests = data[:, 1]
    steps = np.diff(timestamps)
    if np.any(steps <= 0) or np.any(steps != steps[0]):
        raise TraceFormatError(f"{path}: timestamps must increase by a constant step")
    if not np.all(np.isfinite(requests)) or np.any(requests < 0):
        raise TraceFormatError(f"{path}: request counts must be finite and non-negative")
    return Trace(path.stem, timestamps, requests, int(steps[0]))
