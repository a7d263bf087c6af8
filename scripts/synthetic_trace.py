"""Write a synthetic request trace with a smooth, steady daily rhythm, reproducibly (fixed seed).

    .venv/bin/python scripts/synthetic_trace.py --preset tune      # data/traces/synthetic_smooth_tune_1min.csv
    .venv/bin/python scripts/synthetic_trace.py --preset show      # data/traces/synthetic_smooth_show_1min.csv

The rate of minute ``m`` (requests per second) is

    base x (1 + a1 cos(2 pi (h - peak1) / 24) + a2 cos(4 pi (h - peak2) / 24)) x week(day) x exp(drift(m))

with ``h`` the UTC hour of day, ``week`` a factor per weekday (at its noon, joined smoothly to the next day's), and ``drift`` a slow AR(1) walk on the log scale (its
memory ``drift_hours``, its size ``drift_sigma``): demand that follows the clock, as a large service's aggregate
traffic does, with a little day-to-day wander. Each minute's count is a Poisson draw around rate x 60: at these
levels (thousands of requests per second) that noise is small. The two presets differ in every parameter and seed;
data/traces/README.md says which played which part in choosing policy defaults.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MONDAY = 1_704_067_200  # 2024-01-01 00:00 UTC


@dataclass(frozen=True)
class Rhythm:
    seed: int
    days: int
    base_rps: float
    a1: float  # daily swing (fraction of the base)
    peak1_h: float  # hour of the daily peak (UTC)
    a2: float  # second harmonic: a second, smaller daily bump
    peak2_h: float
    week: tuple[float, float, float, float, float, float, float]  # Monday .. Sunday
    drift_hours: float
    drift_sigma: float


PRESETS = {
    # Used to choose the defaults of the forecast-utilisation step (docs/simulator.md).
    "tune": Rhythm(
        seed=20240101, days=14, base_rps=10_000.0, a1=0.35, peak1_h=14.0, a2=0.08, peak2_h=10.0,
        week=(1.0, 1.02, 1.03, 1.02, 0.98, 0.85, 0.82), drift_hours=6.0, drift_sigma=0.03,
    ),
    # Held out: only shows the chosen defaults. A consumer-style rhythm: evening peak, busier weekends.
    "show": Rhythm(
        seed=77, days=14, base_rps=6_000.0, a1=0.45, peak1_h=20.5, a2=0.12, peak2_h=13.0,
        week=(0.95, 0.94, 0.96, 0.98, 1.05, 1.12, 1.10), drift_hours=12.0, drift_sigma=0.05,
    ),
}  # fmt: skip


def weekly_factor(rhythm: Rhythm, t: np.ndarray) -> np.ndarray:
    """Each weekday's factor at its noon, joined smoothly (cosine steps) to the next: no jump at midnight."""
    days = t / 86_400 - 0.5  # 0 at Monday noon (the trace starts on a Monday)
    today = np.floor(days)
    frac = days - today
    factors = np.asarray(rhythm.week)
    a = factors[today.astype(np.int64) % 7]
    b = factors[(today.astype(np.int64) + 1) % 7]
    blend = (1 - np.cos(np.pi * frac)) / 2
    return np.asarray(a + (b - a) * blend, dtype=np.float64)


def minute_rates(rhythm: Rhythm, rng: np.random.Generator) -> np.ndarray:
    """Requests per second of each minute."""
    minutes = rhythm.days * 1440
    t = np.arange(minutes, dtype=np.float64) * 60.0
    hour = (t % 86_400) / 3600
    daily = (
        1
        + rhythm.a1 * np.cos(2 * np.pi * (hour - rhythm.peak1_h) / 24)
        + rhythm.a2 * np.cos(4 * np.pi * (hour - rhythm.peak2_h) / 24)
    )
    week = weekly_factor(rhythm, t)
    phi = math.exp(-1.0 / (rhythm.drift_hours * 60))
    shocks = rng.normal(0.0, rhythm.drift_sigma * math.sqrt(1 - phi * phi), minutes)
    drift = np.empty(minutes)
    level = rng.normal(0.0, rhythm.drift_sigma)
    for i in range(minutes):
        level = phi * level + shocks[i]
        drift[i] = level
    return rhythm.base_rps * daily * week * np.exp(drift)


def write_trace(rhythm: Rhythm, path: Path) -> None:
    rng = np.random.default_rng(rhythm.seed)
    counts = rng.poisson(minute_rates(rhythm, rng) * 60.0)
    timestamps = MONDAY + 60 * np.arange(counts.size)
    rows = "\n".join(f"{ts},{count}" for ts, count in zip(timestamps, counts, strict=True))
    path.write_text("timestamp,requests\n" + rows + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, default=None, help="default: data/traces/synthetic_smooth_PRESET_1min.csv")
    args = parser.parse_args()
    out = args.out or ROOT / "data" / "traces" / f"synthetic_smooth_{args.preset}_1min.csv"
    write_trace(PRESETS[args.preset], out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
