"""prewarm itself in the simulator: the live controller's decide() fed by the live forecasting pipeline.

The forecast comes from ``forecaster.pipeline.run_pipeline`` with the plan ``controller.forecast_plan.plan_for``
builds, exactly as the scheduled job makes it (``controller/forecast_job.py``): the same history bins (the store's
``resample_samples`` over the per-second arrivals seen so far), the same refit schedule, model choice, band
calibration and span (tests/test_forecast_parity.py). The history ends at ``now``, so a decision never depends on
the future.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from controller.capacity import CapacityEvidence, LearnedCapacity, learn
from controller.decide import Decision, DecisionState, ForecastInput, Observations, decide
from controller.decision_values import FloatArray
from controller.forecast_plan import ForecasterSettings, forecast_input, plan_for
from controller.policy import ScalingPolicy
from controller.simulation.engine import ClusterView
from forecaster.pipeline import ForecastPlan, PipelineForecast, PipelineState, run_pipeline
from forecaster.types import ForecastError, History
from prewarm.db.store import resample_samples

log = logging.getLogger(__name__)


def live_forecaster_settings() -> ForecasterSettings:
    """The forecaster settings the live job would use (``PREWARM_FORECAST_*``)."""
    from prewarm.settings import get_settings

    return ForecasterSettings.from_settings(get_settings())


@dataclass
class HistoryBins:
    """The per-second arrivals seen so far, aggregated into the forecast's bins as the store's ``resample`` does:
    bins aligned to the epoch, each complete bin computed once (it never changes again)."""

    step_s: float
    statistic: str
    first_ts: float = float("nan")  # start of the first bin
    values: FloatArray = field(default_factory=lambda: np.empty(0))

    def history(self, view: ClusterView, start: float, end: float) -> History:
        """The bins of ``[start, end)`` (``end`` <= now): NaN before the trace began."""
        step = self.step_s
        trace_start = view.now_ts - view.t
        if not np.isfinite(self.first_ts):
            self.first_ts = float(np.floor(trace_start / step) * step)
        done_end = self.first_ts + len(self.values) * step
        if end > done_end:
            lo = max(0, round(done_end - trace_start))
            hi = round(end - trace_start)
            stamps = trace_start + np.arange(lo, hi, dtype=np.float64)
            new = resample_samples(stamps, view.arrivals[lo:hi], done_end, end, step, self.statistic)  # type: ignore[arg-type]
            self.values = np.concatenate([self.values, new.to_numpy(dtype=np.float64)])
        first = round((start - self.first_ts) / step)
        count = round((end - start) / step)
        out = np.full(count, np.nan)
        skip = max(0, -first)
        if skip < count:
            out[skip:] = self.values[first + skip : first + count]
        return History(start, step, out)


def held_requests(view: ClusterView) -> int:
    """The simulator's activator: while no replica is ready, every request waiting in front of the deployment is
    held (the engine's queue at the end of the last second), as the gateway's activator would report it."""
    if view.ready > 0 or view.t == 0:
        return 0
    return int(np.ceil(view.queue[-1] - 1e-9))


@dataclass
class PrewarmAutoscaler:
    """Calls ``decide()`` every ``policy.decision_interval_s`` with per-second observations and the latest forecast."""

    policy: ScalingPolicy
    name: str = "prewarm"
    use_forecast: bool = True
    forecaster_settings: ForecasterSettings = field(default_factory=live_forecaster_settings)
    state: DecisionState = field(default_factory=DecisionState)
    forecast: ForecastInput | None = None
    sources: Counter[str] = field(default_factory=Counter)
    forecast_log: list[tuple[int, float]] = field(default_factory=list)  # (t, upper rps decide() used)
    # (t, lower, point, upper) of the used forecast's interval holding t: the band as it was known, for the plot
    band_log: list[tuple[int, float, float, float]] = field(default_factory=list)
    refits: int = 0
    models: Counter[str] = field(default_factory=Counter)  # model -> refits it made
    last_result: PipelineForecast | None = None
    pipeline_state: PipelineState = field(default_factory=PipelineState)
    capacity: CapacityEvidence = field(default_factory=CapacityEvidence)  # the same evidence the loop keeps
    learned_capacity: LearnedCapacity | None = None
    capacity_in_use: float | None = None
    last_decision: Decision | None = None  # the pooled simulator places its total (controller/placement.py)
    _plan: ForecastPlan | None = None
    _bins: HistoryBins | None = None

    @property
    def interval_s(self) -> int:
        return max(1, round(self.policy.decision_interval_s))

    def plan(self, view: ClusterView) -> ForecastPlan:
        """The live plan for this policy, with the cluster's startup as the measured one."""
        if self._plan is None:
            self._plan = plan_for(self.policy, float(view.cluster.startup_s), self.forecaster_settings)
        return self._plan

    def refit_due(self, view: ClusterView) -> bool:
        last = self.last_result
        return self.plan(view).due(
            view.now_ts, last.created_at if last else None, last.history_s if last else 0.0
        )

    def refit(self, view: ClusterView) -> None:
        """Run the pipeline on the history up to now, as the scheduled job would."""
        plan = self.plan(view)
        if self._bins is None:
            self._bins = HistoryBins(plan.step_s, plan.statistic)
        start, end = plan.window(view.now_ts)
        history = self._bins.history(view, start, end)
        try:
            result, self.pipeline_state = run_pipeline(history, plan, self.pipeline_state, view.now_ts)
        except ForecastError as error:
            log.warning("forecast failed at t=%d: %s", view.t, error)
            return
        if result is None:
            return
        self.refits += 1
        self.models[result.forecast.model] += 1
        self.last_result = result
        self.forecast = forecast_input(result)

    def desired(self, view: ClusterView) -> int:
        if self.use_forecast and self.refit_due(view):
            self.refit(view)
        window = max(1, round(self.policy.stable_window_s))
        ready = view.ready_series[-window:]
        with np.errstate(divide="ignore", invalid="ignore"):
            cpu = np.where(
                ready > 0,
                np.minimum(100.0, view.served[-window:] / (ready * view.cluster.replica_capacity_rps) * 100),
                np.nan,
            )
        p95 = view.p95_window_ms(window)
        seconds = view.now_ts - window + np.arange(window, dtype=np.float64)[-len(ready) :]
        learned = learn(
            self.capacity, seconds, view.arrivals[-window:], ready.astype(np.float64), p95, view.queue[-window:],
            cpu, view.served[-window:], slo_p95_ms=self.policy.capacity_latency_slo_ms,
            cpu_saturation_percent=self.policy.capacity_cpu_saturation_percent,
            half_life_s=self.policy.capacity_half_life_s,
        )  # fmt: skip
        observations = Observations(
            current_replicas=view.current,
            ready_replicas=view.ready,
            rps=view.arrivals[-window:],
            latency_p95_ms=p95,
            cpu_percent=cpu,
            queue_length=view.queue[-window:],
            last_sample_ts=view.now_ts - 1.0,
            replica_startup_s=float(view.cluster.startup_s),
            learned_capacity=learned,
            held_requests=held_requests(view),
        )
        decision = decide(self.policy, observations, self.forecast, self.state, view.now_ts)
        self.state = decision.new_state
        self.last_decision = decision
        self.learned_capacity, self.capacity_in_use = learned, decision.capacity_rps
        self.sources[decision.source] += 1
        if decision.forecast_upper_rps is not None:  # decide() used the forecast
            self.forecast_log.append((view.t, decision.forecast_upper_rps))
            self._log_band(view)
        return decision.desired

    def _log_band(self, view: ClusterView) -> None:
        forecast = self.forecast
        if (
            forecast is None
            or forecast.point is None
            or forecast.lower is None
            or not forecast.target_ts.size
        ):
            return
        index = int((view.now_ts - float(forecast.target_ts[0])) // forecast.step_s)
        if 0 <= index < forecast.target_ts.size:
            self.band_log.append(
                (
                    view.t,
                    float(forecast.lower[index]),
                    float(forecast.point[index]),
                    float(forecast.upper[index]),
                )
            )
