"""StoreSource: the loop's per-second windows kept in memory by bulk ``prepare`` reads, against direct reads."""

from __future__ import annotations

import math
import time

import numpy as np
from sqlalchemy import Engine

from controller import repository
from controller.sources.store import StoreSource
from prewarm import metric_names as m
from prewarm.db.engine import session_factory
from prewarm.db.store import MetricsStore, Sample

NOW = float(int(time.time()))


def _create(engine: Engine, *names: str) -> dict[str, int]:
    ids = {}
    with session_factory(engine)() as session:
        for name in names:
            row = repository.create_deployment(
                session, name=name, model="m", backend="dry-run", backend_config={}, min_replicas=1, max_replicas=4,
                price_per_replica_hour=0.1, policy=None, author="test",
            )  # fmt: skip
            ids[name] = row.id
        session.commit()
    return ids


def test_prepared_windows_equal_direct_reads_for_several_deployments(engine: Engine) -> None:
    ids = _create(engine, "a", "b")
    store = MetricsStore(engine)
    rng = np.random.default_rng(7)
    samples = [
        Sample(name, metric, NOW - 60 + i, float(rng.uniform(0, 100)))
        for name in ("a", "b")
        for metric in (m.REQUESTS_RPS, m.LATENCY_P95_MS, m.CPU_PERCENT)
        for i in range(60)
        if rng.uniform() > 0.2  # gaps: NaN in both
    ]
    store.insert_samples(samples, now=NOW + 1)
    source = StoreSource(store)
    source.prepare([(ids["a"], "a"), (ids["b"], "b")], NOW, 30.0)
    assert source.rows_read > 0
    for name in ("a", "b"):
        kept = source.window(name, NOW, 30.0)
        direct = StoreSource(store).window(name, NOW, 30.0)  # nothing prepared: read on the spot
        np.testing.assert_array_equal(kept.timestamps, direct.timestamps)
        for metric in (m.REQUESTS_RPS, m.LATENCY_P95_MS, m.CPU_PERCENT, m.QUEUE_LENGTH):
            np.testing.assert_array_equal(kept.values[metric], direct.values[metric])
        assert np.isfinite(kept.values[m.REQUESTS_RPS]).sum() > 15


def test_a_late_sample_is_picked_up_and_the_newest_sample_of_a_second_wins(engine: Engine) -> None:
    ids = _create(engine, "a")
    store = MetricsStore(engine)
    store.insert_samples([Sample("a", m.REQUESTS_RPS, NOW - 10 + i, 1.0) for i in range(10)], now=NOW + 1)
    source = StoreSource(store, late_s=15.0)
    source.prepare([(ids["a"], "a")], NOW, 20.0)
    before = source.window("a", NOW, 20.0)
    assert math.isnan(before.values[m.REQUESTS_RPS][np.searchsorted(before.timestamps, NOW - 12)])
    # Arrives after the read, stamped 12 s before it; and two samples in one later second (0.2 and 0.7 s in).
    store.insert_samples(
        [Sample("a", m.REQUESTS_RPS, NOW - 12, 5.0), Sample("a", m.REQUESTS_RPS, NOW + 2.7, 9.0),
         Sample("a", m.REQUESTS_RPS, NOW + 2.2, 3.0)],
        now=NOW + 4,
    )  # fmt: skip
    source.prepare([(ids["a"], "a")], NOW + 4, 20.0)
    after = source.window("a", NOW + 4, 20.0)
    rps, axis = after.values[m.REQUESTS_RPS], after.timestamps
    assert rps[np.searchsorted(axis, NOW - 12)] == 5.0
    assert rps[np.searchsorted(axis, NOW + 2)] == 9.0  # second NOW + 2 holds 2.2 and 2.7 s: the newer wins
