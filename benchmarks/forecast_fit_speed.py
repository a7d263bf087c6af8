"""Fit+predict seconds of each model on a long history: 28 days at 1 s (what the trace simulator refits on).

Run: .venv/bin/python benchmarks/forecast_fit_speed.py [--models profile,ma,holt_winters] [--repeat 3]
Prints a Markdown table; models run side by side in one process so the ratios are comparable on a busy machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from forecaster import History, make_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="naive,ma,snaive_day,snaive_week,profile,holt_winters")
    parser.add_argument("--days", type=float, default=28.0)
    parser.add_argument("--step-s", type=float, default=1.0)
    parser.add_argument("--horizon-s", type=float, default=600.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = int(args.days * 86_400 / args.step_s)
    t = np.arange(n) * args.step_s
    values = rng.poisson(args.step_s * (5 + 4 * np.sin(2 * np.pi * t / 86_400))).astype(np.float64)
    history = History(1_700_000_000.0, args.step_s, values)
    steps = int(args.horizon_s / args.step_s)
    print(f"history: {args.days:g} days at {args.step_s:g} s ({n} points), horizon {steps} steps")
    print(f"\n| model | fit+predict s (median of {args.repeat}) |\n|---|---:|")
    for name in args.models.split(","):
        model = make_model(name)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            model.forecast(history, steps)
            times.append(time.perf_counter() - started)
        print(f"| {name} | {float(np.median(times)):.3f} |")


if __name__ == "__main__":
    main()
