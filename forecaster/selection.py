"""Model assessment by rolling-origin backtest on a deployment's own recent history: which model, and its residuals."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from forecaster.backtest import BacktestResult, backtest
from forecaster.calibration import Residuals
from forecaster.registry import DEFAULT_CANDIDATES, FALLBACK_CHAIN, make_model
from forecaster.types import DEFAULT_QUANTILES, History

log = logging.getLogger(__name__)

# The selection backtest spaces its origins this far apart by default: one day scored and one day calibrating
# cost 24 fits per candidate.
SELECTION_EVERY_S = 7200.0


@dataclass(frozen=True)
class Selection:
    """The model chosen for a deployment, its recent errors, and the backtest that chose it (None: too little
    history to score any model, the first fallback model was taken unscored)."""

    model_name: str
    recent_mae: float | None
    result: BacktestResult | None
    history_s: float = 0.0  # observed history the assessment had

    @property
    def scored(self) -> bool:
        return self.result is not None

    @property
    def provisional(self) -> bool:
        """Some candidate lacked the history it needs (it fell back, e.g. a daily profile before two days): the
        choice may change as soon as the history grows."""
        return self.result is not None and any(s.fallbacks for s in self.result.scores.values())

    @property
    def residuals(self) -> Residuals | None:
        """The chosen model's band residuals over the backtest (they calibrate its next forecasts)."""
        return self.result.residuals.get(self.model_name) if self.result is not None else None


def select_model(
    history: History,
    horizon_s: float,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    every_s: float = SELECTION_EVERY_S,
    eval_s: float = 86_400.0,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
) -> Selection:
    """Backtest ``candidates`` with calibrated bands over the last ``eval_s`` of ``history`` (origins every
    ``every_s``, bands calibrated on the ``eval_s`` before); the lowest pinball loss of the upper band wins.

    A short history is split in halves (calibration, then scoring). With too little history for even one origin,
    the only candidate, or the first fallback model, is chosen without a score.
    """
    step_s = history.step_s
    horizon_steps = max(1, math.ceil(horizon_s / step_s - 1e-9))
    horizon_span_s = horizon_steps * step_s
    usable_s = history.span_s - step_s  # an origin needs at least one value before it
    observed_s = history.observed_count() * step_s
    if usable_s < horizon_span_s or history.observed_count() < 2 * horizon_steps:
        unscored = candidates[0] if len(candidates) == 1 else FALLBACK_CHAIN[0]
        return Selection(unscored, None, None, observed_s)
    eval_s = max(horizon_span_s, min(eval_s, usable_s / 2))  # at least one origin with a whole horizon
    calibration_s = min(eval_s, usable_s - eval_s)
    every_s = min(every_s, max(step_s, (eval_s - horizon_span_s) / 4))
    result = backtest(
        history,
        [make_model(name) for name in candidates],
        horizon_s,
        every_s,
        eval_s,
        quantiles,
        calibration_s=calibration_s,
    )
    chosen = result.scores[result.selected]
    log.info(
        "selected %s (pinball %.4g, coverage %.3f over %d origins)",
        chosen.name, chosen.pinball_upper, chosen.coverage, result.origins,
    )  # fmt: skip
    return Selection(chosen.name, chosen.mae, result, observed_s)
