"""Model selection by rolling-origin backtest on a deployment's own recent history, and a forecaster that uses it."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from forecaster.backtest import BacktestResult, backtest
from forecaster.registry import DEFAULT_CANDIDATES, forecast_with_fallback, make_model
from forecaster.types import DEFAULT_QUANTILES, Forecast, History, Model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """The model chosen for a deployment and the backtest that chose it."""

    model_name: str
    recent_mae: float | None
    result: BacktestResult | None


def select_model(
    history: History,
    horizon_s: float,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    every_s: float = 3600.0,
    eval_s: float = 86_400.0,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
) -> Selection:
    """Backtest ``candidates`` over the last ``eval_s`` of ``history`` (origins every ``every_s``); lowest MAE wins.

    With too little history for even one origin, the first fallback model is chosen without a score.
    """
    horizon_steps = max(1, math.ceil(horizon_s / history.step_s - 1e-9))
    eval_s = min(eval_s, max(0.0, history.span_s - horizon_steps * history.step_s - history.step_s))
    every_s = min(every_s, max(history.step_s, eval_s / 4))
    if eval_s < history.step_s or history.observed_count() < 2 * horizon_steps:
        return Selection("profile", None, None)
    result = backtest(
        history, [make_model(name) for name in candidates], horizon_s, every_s, eval_s, quantiles
    )
    chosen = result.scores[result.selected]
    log.info("selected %s (mae %.4g over %d origins)", chosen.name, chosen.mae, result.origins)
    return Selection(chosen.name, chosen.mae, result)


class AutoForecaster:
    """Forecasts with the model last selected by backtest; re-selects when asked; never fails (falls back)."""

    name = "auto"

    def __init__(self, candidates: Sequence[str] = DEFAULT_CANDIDATES, eval_s: float = 86_400.0) -> None:
        self.candidates = tuple(candidates)
        self.eval_s = eval_s
        self.selection: Selection | None = None

    def reselect(self, history: History, horizon_s: float) -> Selection:
        self.selection = select_model(history, horizon_s, self.candidates, eval_s=self.eval_s)
        return self.selection

    @property
    def model(self) -> Model:
        return make_model(self.selection.model_name if self.selection else "profile")

    def forecast(
        self, history: History, horizon_steps: int, quantiles: tuple[float, float] = DEFAULT_QUANTILES
    ) -> Forecast:
        if self.selection is None:
            self.reselect(history, horizon_steps * history.step_s)
        return forecast_with_fallback(self.model, history, horizon_steps, quantiles)
