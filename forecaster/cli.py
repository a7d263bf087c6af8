"""``prewarm forecast ...``: backtest models on a trace file, and run the scheduled forecast job."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from forecaster.registry import MODEL_NAMES

if TYPE_CHECKING:
    from forecaster.backtest import BacktestResult


def register(subparsers: Any) -> None:
    """Add the ``forecast`` command group."""
    parser = subparsers.add_parser(
        "forecast", help="request-rate forecasting: backtests and scheduled forecasts"
    )
    commands = parser.add_subparsers(dest="forecast_command", required=True, metavar="SUBCOMMAND")

    bt = commands.add_parser(
        "backtest",
        help="rolling-origin backtest of models on a trace",
        description="At origins every E seconds within the last W seconds of the trace, each model sees only the "
        "history before the origin and forecasts the next H seconds at the trace's resolution.",
    )
    bt.add_argument("--trace", required=True, help="trace CSV (header timestamp,requests)")
    bt.add_argument("--horizon-s", type=float, required=True, help="forecast horizon H, seconds")
    bt.add_argument("--every-s", type=float, required=True, help="spacing of origins E, seconds")
    bt.add_argument(
        "--eval-s", type=float, required=True, help="evaluation window W at the end of the trace, seconds"
    )
    bt.add_argument(
        "--models", default=",".join(MODEL_NAMES), help="comma-separated model names (default: all)"
    )
    bt.add_argument("--quantiles", default="0.1,0.9", help="lower,upper band quantiles (default 0.1,0.9)")
    bt.add_argument(
        "--calibration-s",
        type=float,
        default=86_400.0,
        help="bands are calibrated on the residuals of each model's forecasts of this many seconds before each "
        "origin; origins in the calibration time before W are forecast but not scored (default one day)",
    )
    bt.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bt.set_defaults(handler=run_backtest)

    run = commands.add_parser("run", help="run the scheduled forecast job (once, or forever with --loop)")
    run.add_argument("--deployment", action="append", help="only this deployment (repeatable; default: all)")
    run.add_argument("--loop", action="store_true", help="keep running on the schedule until interrupted")
    run.set_defaults(handler=run_job)


def _parse_quantiles(text: str) -> tuple[float, float]:
    low, high = (float(part) for part in text.split(","))
    if not 0 < low < high < 1:
        raise argparse.ArgumentTypeError("quantiles must satisfy 0 < lower < upper < 1")
    return low, high


def format_table(result: BacktestResult, trace_name: str) -> str:
    """The backtest as a Markdown table, lowest pinball loss of the upper band (the selection rule) first."""
    q_high = result.quantiles[1]
    lines = [
        f"trace {trace_name}: step {result.step_s:g} s, horizon {result.horizon_steps} steps, {result.origins} "
        f"origins (bands calibrated on {result.calibration_origins} earlier ones too)",
        "",
        f"| model | pinball (upper, q {q_high:g}) | coverage | below / above band | own band: pinball | "
        "own band: coverage | MAE | sMAPE % | fit+predict s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for score in sorted(result.scores.values(), key=lambda s: (s.pinball_upper, s.mae)):
        marker = " (selected)" if score.name == result.selected else ""
        lines.append(
            f"| {score.name}{marker} | {score.pinball_upper:.3f} | {score.coverage:.3f} | "
            f"{score.below_lower:.3f} / {score.above_upper:.3f} | "
            f"{score.pinball_upper_own:.3f} | {score.coverage_own:.3f} | {score.mae:.3f} | {score.smape:.1f} | "
            f"{score.fit_s:.4f} |"
        )
    return "\n".join(lines)


def run_backtest(args: argparse.Namespace) -> int:
    import json
    import sys

    from forecaster.backtest import backtest
    from forecaster.registry import UnknownModel, make_model
    from forecaster.types import ForecastError, History
    from prewarm.traces import TraceFormatError, load_trace

    try:
        trace = load_trace(args.trace)
        models = [make_model(name.strip()) for name in args.models.split(",") if name.strip()]
        quantiles = _parse_quantiles(args.quantiles)
        history = History(float(trace.timestamps[0]), float(trace.step_s), trace.requests.astype(float))
        result = backtest(
            history, models, args.horizon_s, args.every_s, args.eval_s, quantiles, args.calibration_s
        )
    except (TraceFormatError, UnknownModel, ForecastError, argparse.ArgumentTypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_json_dict()) if args.json else format_table(result, trace.name))
    return 0


def run_job(args: argparse.Namespace) -> int:
    # The command line sits on top of every package: the scheduled job needs the controller's policies.
    from controller.forecast_job import run_forever, run_once
    from prewarm.db.engine import create_engine_for_url
    from prewarm.settings import get_settings

    settings = get_settings()
    engine = create_engine_for_url(settings.database_url)
    if args.loop:
        run_forever(engine, settings, deployments=args.deployment)
    else:
        run_once(engine, settings, deployments=args.deployment)
    return 0
