"""Bounded storage: minute rollups, reads that use them, expiry in batches, one controller per chunk."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine, func, select

from controller import repository
from prewarm.db.engine import session_factory
from prewarm.db.models import ForecastRun, MetricRollup, MetricSample, ScalingDecision
from prewarm.db.retention import Maintenance, RetentionPolicy
from prewarm.db.store import MetricsStore, Sample

T0 = 1_750_000_020.0 - (1_750_000_020.0 % 60)  # a minute boundary
MINUTES = 10


def _deployment(engine: Engine, name: str) -> int:
    with session_factory(engine)() as session:
        deployment = repository.create_deployment(
            session, name=name, model="m", backend="dry-run", backend_config={}, min_replicas=1,
            max_replicas=4, price_per_replica_hour=0, policy=None, author="test",
        )  # fmt: skip
        session.commit()
        return deployment.id


def _feed(engine: Engine) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    series = {name: rng.uniform(0, 100, MINUTES * 60) for name in ("a", "b")}
    samples = [
        Sample(name, metric, T0 + i, float(values[i]) * (2 if metric == "cpu_percent" else 1))
        for name, values in series.items()
        for metric in ("rps", "cpu_percent")
        for i in range(len(values))
    ]
    MetricsStore(engine).insert_samples(samples, now=T0 + 3600)
    return series


def _count(engine: Engine, model: type) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(model)) or 0)


def test_rollup_holds_each_minutes_mean_max_and_count(engine: Engine) -> None:
    _deployment(engine, "a")
    _deployment(engine, "b")
    series = _feed(engine)
    report = Maintenance(engine).run_once(now=T0 + MINUTES * 60 + 120)
    assert report.rolled_up_minutes == MINUTES
    with engine.connect() as connection:
        rows = connection.execute(
            select(MetricRollup.ts, MetricRollup.mean, MetricRollup.max, MetricRollup.count)
            .where(MetricRollup.metric == "rps")
            .order_by(MetricRollup.deployment_id, MetricRollup.ts)
        ).all()
    assert len(rows) == 2 * MINUTES
    expected = series["a"].reshape(MINUTES, 60)
    for minute, (ts, mean, maximum, count) in enumerate(rows[:MINUTES]):
        assert ts == datetime.fromtimestamp(T0 + 60 * minute, UTC)
        assert count == 60
        assert np.isclose(mean, expected[minute].mean()) and np.isclose(maximum, expected[minute].max())


def test_minute_reads_come_from_rollups_and_survive_the_samples_expiring(engine: Engine) -> None:
    _deployment(engine, "a")
    _deployment(engine, "b")
    _feed(engine)
    store = MetricsStore(engine)
    start, end = datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + MINUTES * 60, UTC)
    raw = {how: store.resample("a", "rps", start, end, 120, how).to_numpy() for how in ("mean", "max", "sum")}
    now = T0 + MINUTES * 60 + 120
    Maintenance(engine, RetentionPolicy(samples_s=60)).run_once(now=now)
    assert _count(engine, MetricSample) < 2 * 2 * 60 * 2  # only the last minutes of samples are left
    for how, values in raw.items():
        assert np.allclose(store.resample("a", "rps", start, end, 120, how).to_numpy(), values), how


def test_samples_not_rolled_up_are_never_expired(engine: Engine) -> None:
    _deployment(engine, "a")
    _deployment(engine, "b")
    _feed(engine)
    maintenance = Maintenance(engine, RetentionPolicy(samples_s=1))
    # Nothing rolled up yet and no rollup run: expiry alone keeps every sample.
    assert maintenance.expire(now=T0 + 86400).get("metric_samples", 0) == 0
    assert _count(engine, MetricSample) == 2 * 2 * MINUTES * 60


def test_expiry_deletes_in_batches_and_keeps_each_deployments_newest_forecast(engine: Engine) -> None:
    first = _deployment(engine, "a")
    old = datetime.fromtimestamp(T0, UTC)
    with session_factory(engine)() as session:
        for age_h in (50, 40, 30):
            session.add(ForecastRun(deployment_id=first, created_at=old - timedelta(hours=age_h),
                                    model_name="naive", step_s=60, horizon_s=600, detail={}))  # fmt: skip
        for i in range(250):
            repository.record_decision(
                session, first, ts=old - timedelta(days=40, seconds=i), current=1, desired=1, applied=True,
                source="hold", reasons=[], policy_version=1,
            )  # fmt: skip
        session.commit()
    policy = RetentionPolicy(forecasts_s=3600, decisions_s=86400, batch_rows=100)
    deleted = Maintenance(engine, policy).expire(now=T0)
    assert deleted["scaling_decisions"] == 250 and deleted["forecast_runs"] == 2
    assert _count(engine, ScalingDecision) == 0
    with engine.connect() as connection:
        kept = connection.scalar(select(ForecastRun.created_at))
    assert kept == old - timedelta(hours=30)


def test_expiry_runs_once_per_interval_across_controllers(engine: Engine) -> None:
    policy = RetentionPolicy(expiry_every_s=60)
    assert Maintenance(engine, policy).expire(now=T0) != {}
    assert Maintenance(engine, policy).expire(now=T0 + 10) == {}  # claimed by the first this interval
    assert Maintenance(engine, policy).expire(now=T0 + 70) != {}


def test_two_controllers_never_roll_up_the_same_chunk(postgres_url: str) -> None:
    from prewarm.db.engine import create_engine_for_url

    engines = [create_engine_for_url(postgres_url) for _ in range(2)]
    try:
        _deployment(engines[0], "a")
        _deployment(engines[0], "b")
        _feed(engines[0])
        policy = RetentionPolicy(rollup_chunk_s=60, reroll_s=0)
        results: list[int] = []

        def run(engine: Engine) -> None:
            total = 0
            for _ in range(MINUTES * 3):
                minutes, _rows = Maintenance(engine, policy).rollup_chunk(T0 + MINUTES * 60 + 120)
                total += minutes
            results.append(total)

        threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(results) == MINUTES  # each minute rolled up by exactly one of them
        assert _count(engines[0], MetricRollup) == 2 * 2 * MINUTES
    finally:
        for engine in engines:
            engine.dispose()
