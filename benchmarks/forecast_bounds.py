"""How low can a forecaster's MAE and upper-band loss go on the NASA backtest? Reference points no causal model can
beat.

    .venv/bin/python -m benchmarks.forecast_bounds

Same definition as ``prewarm forecast backtest --horizon-s 600 --every-s 3600 --eval-s 604800`` on
``data/traces/nasa_http_jul1995_1min.csv`` (168 origins, 10 one-minute steps each). Printed:

- two *non-causal* references that look at the future: the best flat line over each horizon (the median of its 10
  true values) and a centred 11-minute mean of the truth; what is left is the per-minute noise of a small server;
- a *cheating* linear bound: a least-absolute-deviation regression (statsmodels ``QuantReg`` at q = 0.5) fitted on
  the evaluation origins' own answers, over causal inputs that prewarm's ``profile`` model builds from the history
  before each origin (the deseasonalised level at half-lives of 1 to 64 minutes times the daily profile at the
  target minute, the profile itself, the raw levels, the last value, and the truth around the target minute a day
  and a week earlier). A linear model of these inputs fitted causally cannot beat this in-sample fit;
- the goal of issue 5 (10 % below Holt-Winters' 11.45) for comparison.

The same three kinds of reference for the pinball loss of the upper band (quantile 0.9), the forecaster's headline
figure: the best flat upper line over each horizon knowing its 10 values (their 0.9 quantile), and a ``QuantReg``
at q = 0.9 over the same causal inputs fitted on the evaluation answers (cheating), beside the goal of issue 14
(0.9 x the best calibrated pinball loss of Holt-Winters and Prophet, from ``make bench-forecast``).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from statsmodels.regression.quantile_regression import QuantReg

from forecaster.backtest import pinball
from forecaster.profile import DailyProfile
from forecaster.types import History
from prewarm.traces import TRACES_DIR, load_trace

DAY_S = 86_400.0
HALFLIVES_MIN = (1, 2, 4, 8, 16, 32, 64)
HOLT_WINTERS_MAE = 11.45  # measured by `make bench-forecast` (README)
# The best of Holt-Winters' and Prophet's calibrated upper-band pinball loss, measured by `make bench-forecast` (the
# NASA backtest block in README.md).
BASELINE_PINBALL = 2.843
Q_HIGH = 0.9


def causal_inputs(history: History, horizon_steps: int) -> np.ndarray:
    """Rows (one per step ahead) of inputs built only from ``history``: the deseasonalised levels x the profile at
    the target, the profile, the raw levels, the last value, and the 11-step means around the target a day and a
    week earlier."""
    profile = DailyProfile.learn(history.tail(14 * DAY_S), 900.0, 2.0)
    step = history.step_s
    values = history.values
    seasonal_past = profile(history.timestamps + step / 2)
    deseasonalised = pd.Series(values / seasonal_past)
    raw = pd.Series(values)
    levels = np.array([deseasonalised.ewm(halflife=k).mean().iloc[-1] for k in HALFLIVES_MIN])
    raw_levels = np.array([raw.ewm(halflife=k).mean().iloc[-1] for k in HALFLIVES_MIN])
    ahead = np.arange(horizon_steps)
    target = profile(history.end_ts + step * (ahead.astype(np.float64) + 0.5))
    centred = raw.rolling(11, center=True, min_periods=1).mean().to_numpy()

    def earlier(seconds: float) -> np.ndarray:
        index = len(values) + ahead - round(seconds / step)
        # inside the history, and the centred mean must not reach past its end; else the last value stands in
        inside = (index >= 0) & (index + 5 < len(values))
        return np.where(inside, centred[np.clip(index, 0, len(values) - 1)], values[-1])

    return np.column_stack(
        [
            np.outer(target, levels),
            target,
            np.tile(raw_levels, (horizon_steps, 1)),
            np.full(horizon_steps, values[-1]),
            earlier(DAY_S),
            earlier(7 * DAY_S),
            np.ones(horizon_steps),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trace", default=str(TRACES_DIR / "nasa_http_jul1995_1min.csv"))
    parser.add_argument("--horizon-steps", type=int, default=10)
    parser.add_argument("--every-steps", type=int, default=60)
    parser.add_argument("--eval-steps", type=int, default=7 * 1440)
    args = parser.parse_args()
    trace = load_trace(args.trace)
    values = trace.requests.astype(np.float64)
    step = float(trace.step_s)
    h = args.horizon_steps
    n = len(values)
    origins = np.arange(n - args.eval_steps, n - h + 1, args.every_steps)
    actual = values[origins[:, None] + np.arange(h)[None, :]]

    flat = np.median(actual, axis=1, keepdims=True)
    centred = pd.Series(values).rolling(11, center=True, min_periods=1).mean().to_numpy()
    centred_at = centred[origins[:, None] + np.arange(h)[None, :]]

    start = float(trace.timestamps[0])
    rows = [causal_inputs(History(start, step, values[:o]), h) for o in origins]
    inputs = np.concatenate(rows)
    fit = QuantReg(actual.reshape(-1), inputs).fit(q=0.5, max_iter=5000)
    in_sample = np.asarray(fit.predict(inputs)).reshape(actual.shape)
    fit_upper = QuantReg(actual.reshape(-1), inputs).fit(q=Q_HIGH, max_iter=5000)
    in_sample_upper = np.asarray(fit_upper.predict(inputs)).reshape(actual.shape)
    flat_upper = np.quantile(actual, Q_HIGH, axis=1, keepdims=True)

    print(f"{trace.name}: {len(origins)} origins x {h} steps of {step:g} s\n")
    print("| reference | MAE |")
    print("|---|---:|")
    print(
        f"| best flat line over each horizon, knowing it (non-causal) | {np.abs(actual - flat).mean():.3f} |"
    )
    print(f"| centred 11-step mean of the truth (non-causal) | {np.abs(actual - centred_at).mean():.3f} |")
    print(
        f"| L1 regression on profile's causal inputs, fitted on the evaluation answers (cheating) | "
        f"{np.abs(actual - in_sample).mean():.3f} |"
    )
    print(f"| goal: 10 % below Holt-Winters ({HOLT_WINTERS_MAE}) | {0.9 * HOLT_WINTERS_MAE:.3f} |")
    print()
    print(f"| reference | pinball loss of the upper band (q {Q_HIGH:g}) |")
    print("|---|---:|")
    print(
        f"| best flat upper line over each horizon, knowing it (non-causal) | "
        f"{pinball(actual, flat_upper, Q_HIGH).mean():.3f} |"
    )
    print(
        f"| quantile regression on profile's causal inputs, fitted on the evaluation answers (cheating) | "
        f"{pinball(actual, in_sample_upper, Q_HIGH).mean():.3f} |"
    )
    print(
        f"| goal: 0.9 x the best calibrated Holt-Winters / Prophet ({BASELINE_PINBALL}) | "
        f"{0.9 * BASELINE_PINBALL:.3f} |"
    )


if __name__ == "__main__":
    main()
