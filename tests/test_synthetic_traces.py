"""The synthetic smooth traces are what scripts/synthetic_trace.py writes, and as smooth as they claim."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from prewarm.traces import TRACES_DIR, load_trace

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("synthetic_trace", ROOT / "scripts" / "synthetic_trace.py")
assert _spec and _spec.loader
synthetic_trace = importlib.util.module_from_spec(_spec)
sys.modules["synthetic_trace"] = synthetic_trace
_spec.loader.exec_module(synthetic_trace)


@pytest.mark.parametrize("preset", ["tune", "show"])
def test_the_committed_trace_is_reproduced_by_its_seed(preset: str, tmp_path: Path) -> None:
    out = tmp_path / "trace.csv"
    synthetic_trace.write_trace(synthetic_trace.PRESETS[preset], out)
    assert out.read_bytes() == (TRACES_DIR / f"synthetic_smooth_{preset}_1min.csv").read_bytes()


@pytest.mark.parametrize("preset", ["tune", "show"])
def test_the_rhythm_is_smooth_and_daily(preset: str) -> None:
    trace = load_trace(TRACES_DIR / f"synthetic_smooth_{preset}_1min.csv")
    rates = trace.rates_rps
    assert trace.step_s == 60 and trace.duration_s == 14 * 86_400
    assert np.max(np.abs(np.diff(rates)) / rates[:-1]) < 0.03  # no jump from one minute to the next
    days = rates.reshape(14, 1440)
    typical = np.median(days, axis=0)
    # every day follows the same clock: its shape correlates closely with the median day's
    assert min(np.corrcoef(day, typical)[0, 1] for day in days) > 0.95
    assert rates.max() / rates.min() > 1.8  # a real daily swing
