"""The scheduled forecast job against real databases (SQLite and Postgres): reads history, writes forecasts."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from controller.forecast_job import ForecastJob, ForecastWorker
from controller.policy import ScalingPolicy
from prewarm import metric_names
from prewarm.db.models import Deployment, ForecastPoint, ForecastRun, Policy
from prewarm.db.store import MetricsStore, Sample
from prewarm.settings import Settings

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)


def add_deployment(engine: Engine, name: str, policy: dict[str, object] | None = None) -> int:
    with Session(engine) as session, session.begin():
        deployment = Deployment(name=name, model="m.onnx")
        session.add(deployment)
        session.flush()
        if policy is not None:
            session.add(Policy(deployment_id=deployment.id, version=1, spec=policy))
        return deployment.id


def add_rps_history(engine: Engine, name: str, hours: float, rate: float = 20.0) -> None:
    """Per-second request-rate samples (Poisson around ``rate``) for the last ``hours`` before NOW."""
    rng = np.random.default_rng(0)
    seconds = int(hours * 3600)
    start = NOW.timestamp() - seconds
    samples = [
        Sample(name, metric_names.REQUESTS_RPS, start + i, float(v))
        for i, v in enumerate(rng.poisson(rate, seconds))
    ]
    MetricsStore(engine).insert_samples(samples, now=NOW.timestamp())


def settings(**overrides: object) -> Settings:
    return Settings(forecast_candidates="naive,ma,profile", forecast_selection_eval_s=3600, **overrides)  # type: ignore[arg-type]


def runs(engine: Engine) -> list[ForecastRun]:
    with Session(engine) as session:
        return list(session.scalars(select(ForecastRun).order_by(ForecastRun.id)))


def test_job_writes_a_forecast_with_band_model_and_recent_error(engine: Engine) -> None:
    add_deployment(engine, "web")
    add_rps_history(engine, "web", hours=3)
    written = ForecastJob(engine, settings()).run_once(now=NOW)
    assert len(written) == 1
    (run,) = runs(engine)
    assert run.model_name in {"naive", "ma", "profile"}
    assert run.recent_mae is not None and run.recent_mae > 0
    assert run.detail["history_peak_rps"] > 20
    # the band is calibrated at once, from the assessment's backtest (no earlier forecast is needed)
    assert run.detail["calibration"]["applied"] and run.detail["calibration"]["residuals"] >= 20
    assert 0 <= run.detail["recent_coverage"] <= 1 and run.detail["recent_pinball_upper"] > 0
    with Session(engine) as session:
        points = list(session.scalars(select(ForecastPoint).where(ForecastPoint.run_id == run.id)))
    # every decision until the next refit needs startup + margin + horizon covered, from the last complete bin
    policy = ScalingPolicy()
    needed_s = (
        policy.default_replica_startup_s + policy.lead_time_margin_s + policy.horizon_s
        + policy.forecast_refit_interval_s + policy.forecast_step_s
    )  # fmt: skip
    assert run.horizon_s >= needed_s
    assert len(points) == math.ceil(needed_s / policy.forecast_step_s - 1e-9)
    assert points[0].target_ts == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # from the last complete bin
    for point in points:
        assert 0 <= point.lower <= point.point <= point.upper
        # the policy forecasts each minute's highest per-second rate: Poisson(20) peaks near 30 in a minute
        assert 25 < point.point < 36


def test_job_waits_for_the_refit_interval(engine: Engine) -> None:
    add_deployment(engine, "web")
    add_rps_history(engine, "web", hours=1)
    job = ForecastJob(engine, settings())
    assert len(job.run_once(now=NOW)) == 1
    assert job.run_once(now=NOW + timedelta(seconds=60)) == []
    assert len(job.run_once(now=NOW + timedelta(seconds=901))) == 1  # default refit interval: 900 s


def test_a_failing_model_is_replaced_by_the_fallback(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from forecaster.profile import ProfileModel

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("model bug")

    monkeypatch.setattr(ProfileModel, "forecast", broken)
    add_deployment(engine, "web", policy={"forecast_model": "profile"})
    add_rps_history(engine, "web", hours=1)
    ForecastJob(engine, settings()).run_once(now=NOW)
    (run,) = runs(engine)
    assert run.model_name == "ma"
    assert run.detail["requested_model"] == "profile"
    assert any("model bug" in note for note in run.detail["notes"])


def test_one_deployment_failing_does_not_stop_the_others(engine: Engine) -> None:
    add_deployment(engine, "bad", policy={"forecast_step_s": "not a number"})  # an unreadable policy
    add_deployment(engine, "good")
    add_rps_history(engine, "good", hours=1)
    written = ForecastJob(engine, settings()).run_once(now=NOW)
    assert len(written) == 1


def test_deployments_without_history_get_no_forecast(engine: Engine) -> None:
    add_deployment(engine, "new")
    assert ForecastJob(engine, settings()).run_once(now=NOW) == []


def test_worker_runs_in_the_background_without_blocking_the_caller(engine: Engine) -> None:
    add_deployment(engine, "web")
    add_rps_history(engine, "web", hours=1)
    worker = ForecastWorker(ForecastJob(engine, settings()), poll_interval_s=60, clock=lambda: NOW)
    started = time.perf_counter()
    worker.start()
    returned_after_s = time.perf_counter() - started
    deadline = time.monotonic() + 60
    while worker.runs_completed == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    assert returned_after_s < 1.0
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(ForecastRun)) == 1


def test_a_time_compressed_replay_is_forecast_with_its_compressed_daily_pattern(engine: Engine) -> None:
    compression = 360.0
    day_s = 86_400 / compression  # a day replayed in 240 s
    policy = {
        "forecast_time_compression": compression, "forecast_step_s": 1.0, "forecast_model": "profile",
        "forecast_statistic": "mean", "default_replica_startup_s": 5.0, "lead_time_margin_s": 1.0,
        "horizon_s": 10.0, "forecast_refit_interval_s": 30.0,
    }  # fmt: skip
    add_deployment(engine, "replay", policy)
    seconds = int(7 * day_s)
    start = NOW.timestamp() - seconds
    t = start + np.arange(seconds)
    shape = 100 + 80 * np.sin(2 * np.pi * t / day_s)
    MetricsStore(engine).insert_samples(
        [
            Sample("replay", metric_names.REQUESTS_RPS, float(ts), float(v))
            for ts, v in zip(t, shape, strict=True)
        ],
        now=NOW.timestamp(),
    )
    ForecastJob(engine, settings()).run_once(now=NOW)
    (run,) = runs(engine)
    with Session(engine) as session:
        points = list(session.scalars(select(ForecastPoint).where(ForecastPoint.run_id == run.id)))
    assert run.step_s == pytest.approx(1.0)
    stamps = np.array([p.target_ts.timestamp() for p in points])
    assert np.allclose(np.diff(stamps), 1.0)  # replay seconds, not stretched ones
    expected = 100 + 80 * np.sin(2 * np.pi * stamps / day_s)
    assert np.mean(np.abs(np.array([p.point for p in points]) - expected)) < 10.0


def test_refresh_forecasts_a_deployment_by_name_even_when_not_due(engine: Engine) -> None:
    add_deployment(engine, "web")
    add_rps_history(engine, "web", hours=3)
    job = ForecastJob(engine, settings())
    assert job.run_once(now=NOW) and job.run_once(now=NOW) == []  # the second pass is not due
    assert job.refresh("web", now=NOW) is not None
    assert len(runs(engine)) == 2
    with pytest.raises(LookupError, match="nope"):
        job.refresh("nope", now=NOW)
