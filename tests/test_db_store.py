"""The metrics store, on SQLite and on real Postgres (every test runs on both)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from prewarm.db.models import MetricSample
from prewarm.db.store import (
    InvalidSampleError,
    MetricsStore,
    Sample,
    UnknownDeploymentError,
    resample_samples,
)
from tests.helpers import add_deployment

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
T0_S = T0.timestamp()


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(MetricSample)).scalar_one())


def test_insert_then_read_range_returns_samples_in_order(engine: Engine) -> None:
    add_deployment(engine)
    store = MetricsStore(engine)
    samples = [Sample("digits", "rps", T0_S + i, float(i * 10)) for i in (2, 0, 1)]
    assert store.insert_samples(samples) == 3
    stamps, values = store.read_range("digits", "rps", T0, T0 + timedelta(seconds=3))
    assert stamps.tolist() == [T0_S, T0_S + 1, T0_S + 2]
    assert values.tolist() == [0.0, 10.0, 20.0]


def test_read_range_end_is_exclusive_and_other_metrics_are_not_mixed_in(engine: Engine) -> None:
    add_deployment(engine)
    store = MetricsStore(engine)
    store.insert_samples(
        [Sample("digits", "rps", T0_S + i, 1.0) for i in range(5)]
        + [Sample("digits", "cpu_percent", T0_S + i, 50.0) for i in range(5)]
    )
    stamps, values = store.read_range("digits", "rps", T0 + timedelta(seconds=1), T0 + timedelta(seconds=3))
    assert stamps.tolist() == [T0_S + 1, T0_S + 2]
    assert values.tolist() == [1.0, 1.0]


def test_resending_a_batch_upserts_instead_of_duplicating(engine: Engine) -> None:
    add_deployment(engine)
    store = MetricsStore(engine)
    batch = [Sample("digits", "rps", T0_S + i, 5.0) for i in range(100)]
    store.insert_samples(batch)
    store.insert_samples(batch)
    assert _count(engine) == 100
    store.insert_samples([Sample("digits", "rps", T0_S + 7, 99.0)])
    assert _count(engine) == 100
    _, values = store.read_range("digits", "rps", T0 + timedelta(seconds=7), T0 + timedelta(seconds=8))
    assert values.tolist() == [99.0]


def test_duplicate_keys_inside_one_batch_keep_the_last_value(engine: Engine) -> None:
    add_deployment(engine)
    store = MetricsStore(engine)
    store.insert_samples([Sample("digits", "rps", T0_S, 1.0), Sample("digits", "rps", T0_S, 2.0)])
    _, values = store.read_range("digits", "rps", T0, T0 + timedelta(seconds=1))
    assert values.tolist() == [2.0]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Sample("digits", "rps", T0_S, math.nan), "not a finite number"),
        (Sample("digits", "rps", T0_S, math.inf), "not a finite number"),
        (Sample("digits", "rps", T0_S, -1.0), "negative"),
        (Sample("digits", "rps", T0_S + 86_400 * 365, 1.0), "in the future"),
        (Sample("digits", "rps", T0_S * 1000, 1.0), "in the future"),
        (Sample("digits", "rps", 12.0, 1.0), "after 2000-01-01"),
        (Sample("digits", "Bad Metric!", T0_S, 1.0), "metric name"),
    ],
)
def test_invalid_sample_rejects_the_whole_batch(engine: Engine, bad: Sample, message: str) -> None:
    add_deployment(engine)
    store = MetricsStore(engine)
    good = [Sample("digits", "rps", T0_S + 100 + i, 1.0) for i in range(10)]
    with pytest.raises(InvalidSampleError, match=message) as caught:
        store.insert_samples([*good[:5], bad, *good[5:]], now=T0_S + 1000)
    assert "sample 5" in str(caught.value)
    assert _count(engine) == 0


def test_unknown_deployment_rejects_the_whole_batch(engine: Engine) -> None:
    add_deployment(engine)
    store = MetricsStore(engine)
    with pytest.raises(UnknownDeploymentError, match="nope"):
        store.insert_samples([Sample("digits", "rps", T0_S, 1.0), Sample("nope", "rps", T0_S, 1.0)])
    assert _count(engine) == 0


def test_resample_per_minute_with_gaps_leaves_nan_for_empty_bins(engine: Engine) -> None:
    add_deployment(engine)
    store = MetricsStore(engine)
    # minute 0: values 0..59 (mean 29.5); minute 1: nothing; minute 2: one sample of 7
    samples = [Sample("digits", "rps", T0_S + i, float(i)) for i in range(60)]
    samples.append(Sample("digits", "rps", T0_S + 150, 7.0))
    store.insert_samples(samples)
    series = store.resample("digits", "rps", T0, T0 + timedelta(minutes=3), step_s=60)
    assert list(series.index) == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert series.iloc[0] == pytest.approx(29.5)
    assert math.isnan(series.iloc[1])
    assert series.iloc[2] == 7.0
    sums = store.resample("digits", "rps", T0, T0 + timedelta(minutes=3), step_s=60, how="sum")
    assert sums.iloc[0] == pytest.approx(sum(range(60)))


def test_resample_per_second_returns_one_value_per_second(engine: Engine) -> None:
    add_deployment(engine)
    store = MetricsStore(engine)
    store.insert_samples([Sample("digits", "rps", T0_S + i, float(i)) for i in range(0, 10, 2)])
    series = store.resample("digits", "rps", T0, T0 + timedelta(seconds=10), step_s=1)
    assert len(series) == 10
    assert series.to_numpy()[::2].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert np.isnan(series.to_numpy()[1::2]).all()


def test_retention_deletes_only_samples_older_than_the_cutoff(engine: Engine) -> None:
    add_deployment(engine)
    store = MetricsStore(engine)
    store.insert_samples([Sample("digits", "rps", T0_S + i * 3600, 1.0) for i in range(10)])
    deleted = store.delete_older_than(T0 + timedelta(hours=4))
    assert deleted == 4
    stamps, _ = store.read_range("digits", "rps", T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert stamps[0] == T0_S + 4 * 3600
    assert len(stamps) == 6


def test_resample_aggregations() -> None:
    stamps = np.array([0.0, 0.5, 1.0, 1.2, 3.9])
    values = np.array([1.0, 3.0, 5.0, 2.0, 4.0])
    assert resample_samples(stamps, values, 0, 4, 1, "max").tolist()[:2] == [3.0, 5.0]
    assert resample_samples(stamps, values, 0, 4, 1, "min").tolist()[:2] == [1.0, 2.0]
    assert resample_samples(stamps, values, 0, 4, 1, "last").tolist()[:2] == [3.0, 2.0]
    result = resample_samples(stamps, values, 0, 4, 1, "mean")
    assert math.isnan(result.iloc[2]) and result.iloc[3] == 4.0
