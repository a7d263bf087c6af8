"""The one forecasting pipeline: a deployment's history up to now and its plan in, the forecast decide() gets out.

The scheduled job (``controller/forecast_job.py``) and the simulator (``controller/simulation/prewarm_policy.py``)
both call ``run_pipeline``; nothing else turns history into a forecast. It is pure apart from the model fit: the
memory between two forecasts of a deployment (the model chosen and when, the band residuals that calibrate it) is
the explicit ``PipelineState`` passed in and returned, and time is the ``now`` argument.

What it decides, in order:

1. **History**: the bins of ``plan.step_s`` ending at the last complete bin before ``now`` (``plan.window``),
   starting at the first observed bin when the deployment is younger than ``plan.history_s``.
2. **Span**: the forecast reaches the next refit (``plan.refit_in_s``: often while the history is young) plus the
   lead time and the horizon every decision until then needs, plus one step (it starts at the last complete bin).
3. **Model**: ``plan.model``, or for ``auto`` the candidate whose *calibrated upper band* had the lowest pinball
   loss in a rolling-origin backtest over the recent history, scored on the span. The assessment (a backtest of
   the one model when it is fixed) is cached for ``plan.reselect_interval_s`` once it scored enough points; an
   unknown model name falls back to ``profile`` with a note, a failing model along ``profile -> ma -> naive``.
4. **Band calibration**: the upper and lower edges are moved by the conformal quantiles of the model's own recent
   residuals (``forecaster.calibration``): those of the assessment's backtest, then of the pipeline's own earlier
   forecasts as their targets are observed, over the last ``plan.selection_eval_s``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from forecaster.calibration import (
    MIN_RESIDUALS,
    Calibration,
    Residuals,
    asked_model,
    calibrate,
    history_reference,
    residuals_since,
)
from forecaster.registry import DEFAULT_CANDIDATES, UnknownModel, forecast_with_fallback, make_model
from forecaster.selection import Selection, select_model
from forecaster.timescale import compress, stretch
from forecaster.types import DEFAULT_QUANTILES, Forecast, History

log = logging.getLogger(__name__)

DAY_S = 86_400.0
# An assessment in which some candidate lacked the history it needs is redone once the history has grown by half.
PROVISIONAL_GROWTH = 1.5


@dataclass(frozen=True)
class ForecastPlan:
    """What to forecast for one deployment, as plain numbers (``controller.forecast_plan.plan_for`` derives it from
    the scaling policy, the measured startup and the forecaster settings)."""

    model: str  # a model name or "auto"
    step_s: float  # bin width of the history and the forecast
    history_s: float  # how much history the model is fitted on (at most)
    lead_s: float  # replica startup + margin: how far ahead a decision must look before its horizon
    horizon_s: float  # the policy's horizon after the lead time
    refit_interval_s: float  # refit this often once the history is long
    refit_history_fraction: float = 0.1  # while it is young, refit every this fraction of its length
    statistic: Literal["mean", "max"] = "mean"  # per bin: the mean rate or the highest per-second rate
    time_compression: float = 1.0  # > 1 for a time-compressed replay (forecaster.timescale)
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES  # what 'auto' chooses from
    quantiles: tuple[float, float] = DEFAULT_QUANTILES
    selection_eval_s: float = DAY_S  # recent history the assessment scores on, and the residual window
    reselect_interval_s: float = DAY_S  # an assessment is reused this long (model time)

    @property
    def decision_window_s(self) -> float:
        """What one decision needs covered after ``now``: the lead time plus the horizon."""
        return self.lead_s + self.horizon_s

    def refit_in_s(self, history_s: float) -> float:
        """Seconds until the next refit for a forecast fitted on ``history_s`` of history: often while it is
        short (``refit_history_fraction`` of it, at least one step), ``refit_interval_s`` once it is long."""
        young = max(self.step_s, self.refit_history_fraction * max(0.0, history_s))
        return min(self.refit_interval_s, young)

    def span_s(self, history_s: float) -> float:
        """How far a forecast reaches: every decision until the next refit, from the last complete bin."""
        return self.refit_in_s(history_s) + self.decision_window_s + self.step_s

    def window(self, now: float) -> tuple[float, float]:
        """``[start, end)`` of the history a forecast at ``now`` is fitted on: whole bins aligned to the epoch,
        the last one complete before ``now``."""
        end = math.floor(now / self.step_s + 1e-9) * self.step_s
        return end - math.floor(self.history_s / self.step_s + 1e-9) * self.step_s, end

    def due(self, now: float, last_created_at: float | None, last_history_s: float) -> bool:
        """True when a forecast made at ``last_created_at`` from ``last_history_s`` of history needs a refit."""
        return last_created_at is None or now - last_created_at >= self.refit_in_s(last_history_s)


@dataclass(frozen=True)
class PendingForecast:
    """A forecast (uncalibrated band) whose targets are still being observed; its residuals join the memory."""

    forecast: Forecast
    ref: float
    consumed_until: float  # targets before this are already residuals


@dataclass(frozen=True)
class PipelineState:
    """What the pipeline remembers between two forecasts of one deployment; pass back the returned one."""

    selection: Selection | None = None
    assessed_at: float | None = None  # when the selection was made (the caller's clock)
    residuals: Residuals | None = None  # the current model's band residuals (the calibration memory)
    pending: tuple[PendingForecast, ...] = ()


@dataclass(frozen=True)
class PipelineForecast:
    """One forecast as decide() gets it, and how it was made."""

    forecast: Forecast  # calibrated band, in the history's unit and time
    created_at: float  # the ``now`` it was made at
    history: History  # what it was fitted on (trimmed to the first observed bin)
    selection: Selection | None
    calibration: Calibration
    notes: tuple[str, ...] = ()

    @property
    def history_points(self) -> int:
        return self.history.observed_count()

    @property
    def history_s(self) -> float:
        """Seconds of observed history behind the forecast (observed bins x step)."""
        return self.history_points * self.history.step_s

    @property
    def history_peak(self) -> float | None:
        finite = self.history.values[np.isfinite(self.history.values)]
        return float(finite.max()) if finite.size else None


def trimmed(history: History) -> History | None:
    """``history`` from its first observed bin (a young deployment), or None when nothing was observed."""
    observed = np.flatnonzero(np.isfinite(history.values))
    if observed.size == 0:
        return None
    first = int(observed[0])
    return History(history.start_ts + first * history.step_s, history.step_s, history.values[first:])


def run_pipeline(
    history: History, plan: ForecastPlan, state: PipelineState, now: float
) -> tuple[PipelineForecast | None, PipelineState]:
    """The forecast for ``plan`` at ``now`` from ``history`` (the bins of ``plan.window(now)``), and the new state.

    None when the history holds no observation yet.
    """
    end = plan.window(now)[1]
    if abs(history.end_ts - end) > 1e-6 * plan.step_s or abs(history.step_s - plan.step_s) > 1e-9 * plan.step_s:
        raise ValueError(
            f"history must be the {plan.step_s:g} s bins ending at {end:.0f} (plan.window(now)); "
            f"got step {history.step_s:g} ending at {history.end_ts:.0f}"
        )
    young = trimmed(history)
    if young is None:
        return None, state
    history = young
    compression = plan.time_compression
    model_history = stretch(history, compression)
    ref = history_reference(history)
    calibration_window_s = plan.selection_eval_s / compression
    notes: list[str] = []

    name = plan.model
    if name != "auto" and not _known(name):
        notes.append(f"unknown model {name!r}: using profile")
        log.warning("unknown model %r in the policy; using profile", name)
        name = "profile"
    span_steps = max(1, math.ceil(plan.span_s(history.observed_count() * history.step_s) / plan.step_s - 1e-9))

    state = _observe(state, history, calibration_window_s)
    selection = state.selection
    stale = (
        selection is None
        or not _settled(selection)
        or state.assessed_at is None
        or (now - state.assessed_at) * compression >= plan.reselect_interval_s
        or (name != "auto" and selection.model_name != name)
        or (selection.provisional and model_history.observed_count() * model_history.step_s
            >= PROVISIONAL_GROWTH * selection.history_s)
    )  # fmt: skip
    if stale:
        candidates = plan.candidates if name == "auto" else (name,)
        try:
            selection = select_model(
                model_history,
                span_steps * plan.step_s * compression,
                candidates,
                eval_s=plan.selection_eval_s,
                quantiles=plan.quantiles,
            )
        except Exception as error:  # a failing assessment must not stop forecasting: choose unscored, retry later
            log.warning("model assessment failed (%s: %s); forecasting unscored", type(error).__name__, error)
            notes.append(f"assessment failed: {error}")
            selection = Selection("profile" if name == "auto" else name, None, None)
        state = _assessed(state, selection, now, compression)
    assert selection is not None
    model_name = selection.model_name if name == "auto" else name

    raw = compress(
        forecast_with_fallback(make_model(model_name), model_history, span_steps, plan.quantiles), compression
    )
    memory = state.residuals.between(now - calibration_window_s, now) if state.residuals else None
    forecast, calibration = calibrate(raw, memory, ref)
    if notes:
        forecast = dataclasses.replace(forecast, notes=(*forecast.notes, *notes))
    pending = (*state.pending, PendingForecast(raw, ref, history.end_ts))
    state = dataclasses.replace(state, pending=pending)
    return PipelineForecast(forecast, now, history, selection, calibration, tuple(notes)), state


def _known(name: str) -> bool:
    try:
        make_model(name)
    except UnknownModel:
        return False
    return True


def _settled(selection: Selection) -> bool:
    """An assessment is worth keeping once its backtest scored enough points; before, it is redone every refit."""
    result = selection.result
    return result is not None and result.origins * result.horizon_steps >= MIN_RESIDUALS


def _assessed(state: PipelineState, selection: Selection, now: float, compression: float) -> PipelineState:
    """The state after an assessment: its residuals (of the chosen model, in the caller's time) seed the memory,
    with the pipeline's own residuals of the same model kept."""
    seeded = selection.residuals
    if seeded is not None and compression != 1.0:
        seeded = dataclasses.replace(seeded, target_ts=seeded.target_ts / compression)
    own = state.residuals if state.residuals and state.residuals.model == selection.model_name else None
    if own is not None and seeded is not None:
        memory: Residuals | None = own.merged(seeded.between(-math.inf, own.target_ts.min(initial=math.inf)))
    else:
        memory = seeded if seeded is not None else own
    pending = tuple(p for p in state.pending if asked_model(p.forecast) == selection.model_name)
    return PipelineState(selection, now, memory, pending)


def _observe(state: PipelineState, history: History, window_s: float) -> PipelineState:
    """Add the residuals of earlier forecasts at the targets observed since; forget residuals older than the
    window and forecasts whose targets are all observed."""
    memory = state.residuals
    pending: list[PendingForecast] = []
    for item in state.pending:
        if memory is not None and asked_model(item.forecast) != memory.model:
            continue  # a forecast of a model no longer in use
        new = residuals_since(item.forecast, history, item.ref, item.consumed_until)
        memory = new if memory is None else memory.merged(new)
        last_target_end = float(item.forecast.target_ts[-1]) + item.forecast.step_s if len(item.forecast) else 0.0
        if last_target_end > history.end_ts:
            pending.append(dataclasses.replace(item, consumed_until=history.end_ts))
    if memory is not None:
        memory = memory.between(history.end_ts - window_s, math.inf)
    return PipelineState(state.selection, state.assessed_at, memory, tuple(pending))
