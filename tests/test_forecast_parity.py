"""The live forecast job and the simulator give decide() the same forecast from the same history.

Both call ``forecaster.pipeline.run_pipeline`` with the plan ``controller.forecast_plan.plan_for`` builds; this test
feeds the same per-second request rates to the job (through a real store, SQLite and Postgres) and to the
simulator's prewarm autoscaler (as arrivals), at the same two moments, and compares the ``ForecastInput`` each
hands to ``decide()``: the live one as the loop reads it back from the store.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from controller import repository
from controller.decision_values import ForecastInput
from controller.forecast_job import ForecastJob
from controller.forecast_plan import ForecasterSettings
from controller.loop_inputs import stored_forecast_input
from controller.policy import ScalingPolicy
from controller.simulation.cluster import ClusterModel
from controller.simulation.engine import ClusterView
from controller.simulation.prewarm_policy import PrewarmAutoscaler
from prewarm import metric_names
from prewarm.db.models import Deployment, Policy, ReplicaEvent
from prewarm.db.store import MetricsStore, Sample
from prewarm.settings import Settings

DAY_S = 86_400
TRACE_START = 1_772_409_600 + 17  # a Monday 00:00:17 UTC: the first one-minute bin is partial
SECONDS = 3 * DAY_S
CLUSTER = ClusterModel()  # startup 22 s
POLICY = ScalingPolicy(forecast_model="auto", replica_capacity_rps=CLUSTER.replica_capacity_rps)
SETTINGS = Settings(forecast_candidates="naive,ma,profile")  # type: ignore[call-arg]


def arrivals() -> np.ndarray:
    """Per-second requests: a daily rhythm around 200 rps, Poisson."""
    t = np.arange(SECONDS, dtype=np.float64)
    rate = 200 + 120 * np.sin(2 * np.pi * (t + TRACE_START) / DAY_S)
    return np.random.default_rng(7).poisson(rate).astype(np.float64)


def view(values: np.ndarray, t: int) -> ClusterView:
    """The simulator's view at second ``t``: only what happened before it."""
    cumsum = np.concatenate(([0.0], np.cumsum(values[:t])))
    ready = np.full(t, 5.0)
    return ClusterView(
        t, TRACE_START + t, values[:t], cumsum, values[:t], np.zeros(t), ready, 5, 0, CLUSTER
    )


def live_store(engine: Engine, values: np.ndarray) -> None:
    """The same rates as the gateway would have stored them, the policy, and replicas measured at 22 s."""
    with Session(engine) as session, session.begin():
        deployment = Deployment(name="web", model="m.onnx")
        session.add(deployment)
        session.flush()
        session.add(Policy(deployment_id=deployment.id, version=1, spec=POLICY.model_dump(mode="json")))
        session.add(
            ReplicaEvent(
                deployment_id=deployment.id, replica="r1", event="ready", duration_s=float(CLUSTER.startup_s),
                ts=datetime.fromtimestamp(TRACE_START, UTC),
            )
        )  # fmt: skip
    samples = [
        Sample("web", metric_names.REQUESTS_RPS, float(TRACE_START + i), float(v)) for i, v in enumerate(values)
    ]
    MetricsStore(engine).insert_samples(samples, now=float(TRACE_START + SECONDS))


def stored(engine: Engine) -> ForecastInput:
    with Session(engine) as session:
        deployment_id = repository.get_deployment(session, "web").id
        latest = repository.latest_forecast(session, deployment_id)
    assert latest is not None
    result = stored_forecast_input(*latest)
    assert result is not None
    return result


def assert_same(live: ForecastInput, simulated: ForecastInput) -> None:
    assert live.created_at == simulated.created_at
    assert live.step_s == simulated.step_s and live.model == simulated.model
    assert live.history_s == simulated.history_s and live.history_peak_rps == simulated.history_peak_rps
    for name in ("target_ts", "upper", "point", "lower"):
        np.testing.assert_array_equal(getattr(live, name), getattr(simulated, name), err_msg=name)


def test_the_live_job_and_the_simulator_hand_decide_the_same_forecast(engine: Engine) -> None:
    values = arrivals()
    live_store(engine, values)
    job = ForecastJob(engine, SETTINGS)
    simulator = PrewarmAutoscaler(POLICY, forecaster_settings=ForecasterSettings.from_settings(SETTINGS))
    first_t = 2 * DAY_S + 3 * 3600 + 7  # past two days: the daily profile and the band calibration are in play
    for t in (first_t, first_t + 900, first_t + 1800):
        sim_view = view(values, t)
        assert simulator.refit_due(sim_view)
        simulator.refit(sim_view)
        assert job.run_once(now=datetime.fromtimestamp(TRACE_START + t, UTC))  # due too
        assert simulator.forecast is not None
        assert_same(stored(engine), simulator.forecast)
    assert simulator.last_result is not None and simulator.last_result.calibration.applied
    assert simulator.last_result.selection is not None and simulator.last_result.selection.scored
