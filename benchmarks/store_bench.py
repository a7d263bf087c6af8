"""Metrics-store benchmark on Postgres: batch insert rate and the time to read + resample a week.

Usage: python -m benchmarks.store_bench [--postgres-url URL]
Creates a scratch database on the server, measures, and drops it. Prints a Markdown table.
Goals (issue 2): >= 50,000 rows/s insert; < 300 ms to read and resample a week of per-second samples.
Bounded storage (issue 13): the insert rate while the rollup runs beside it, the week read again once the samples
are rolled up into minutes, and the bytes a deployment costs per day on Postgres (per-second samples while they
are kept, per-minute rollups after), measured on an hour of five metrics of 20 deployments.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from prewarm.db import migrate
from prewarm.db.engine import create_engine_for_url
from prewarm.db.retention import Maintenance, RetentionPolicy
from prewarm.db.store import MetricsStore, Sample
from tests.helpers import add_deployment

WEEK_S = 7 * 86_400


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch", type=int, default=5_000, help="samples per insert_samples call")
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    for measure in (run, storage):  # each in a fresh database: the rollup's progress is store-wide
        with scratch_store(args.postgres_url) as store:
            rows += measure(store, args.batch)
    print("| measure (Postgres) | result | goal |")
    print("|---|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")


@contextlib.contextmanager
def scratch_store(postgres_url: str) -> Iterator[MetricsStore]:
    """A store on a new database of the server, with a deployment 'bench'; dropped afterwards."""
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"prewarm_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        engine = create_engine_for_url(url)
        add_deployment(engine, "bench")
        yield MetricsStore(engine)
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(store: MetricsStore, batch: int) -> list[tuple[str, str]]:
    now = time.time()
    start_s = float(int(now) // 60 * 60 - WEEK_S - 60)  # minute-aligned: minute bins are whole rollups
    rng = np.random.default_rng(7)

    # 100,000 samples in batches: the collector's write path (five metrics per second).
    metrics = ["rps", "latency_p95_ms", "cpu_percent", "queue_length", "in_flight"]
    samples = [
        Sample("bench", metrics[i % 5], start_s + i // 5, float(rng.random() * 100)) for i in range(100_000)
    ]
    began = time.perf_counter()
    for offset in range(0, len(samples), batch):
        store.insert_samples(samples[offset : offset + batch], now=now)
    insert_rate = len(samples) / (time.perf_counter() - began)

    # One week of per-second request rates for one deployment, then read + resample it.
    week = [Sample("bench", "rps_week", start_s + i, float(i % 977)) for i in range(WEEK_S)]
    for offset in range(0, len(week), 50_000):
        store.insert_samples(week[offset : offset + 50_000], now=now)
    with store.engine.connect() as connection:
        connection.execute(text("ANALYZE metric_samples"))
    start = datetime.fromtimestamp(start_s, UTC)
    end = start + timedelta(seconds=WEEK_S)
    timings_s: list[float] = []
    timings_min: list[float] = []
    for _ in range(5):
        began = time.perf_counter()
        per_second = store.resample("bench", "rps_week", start, end, step_s=1)
        timings_s.append(time.perf_counter() - began)
        began = time.perf_counter()
        store.resample("bench", "rps_week", start, end, step_s=60)
        timings_min.append(time.perf_counter() - began)
    assert len(per_second) == WEEK_S and not np.isnan(per_second.to_numpy()).any()
    # The same week once rolled up into minutes (the forecaster's read after the samples expired).
    Maintenance(store.engine, RetentionPolicy(rollup_chunk_s=86_400)).run_once(now=start_s + WEEK_S + 3600)
    timings_rolled: list[float] = []
    for _ in range(5):
        began = time.perf_counter()
        rolled = store.resample("bench", "rps_week", start, end, step_s=60, how="max")
        timings_rolled.append(time.perf_counter() - began)
    assert np.isfinite(rolled.to_numpy()).all()
    return [
        (f"insert 100,000 samples in batches of {batch:,}", f"{insert_rate:,.0f} rows/s | >= 50,000 rows/s"),
        (
            "read + resample 1 week per-second (604,800 samples) to 1 s, median of 5",
            f"{statistics.median(timings_s) * 1000:.0f} ms | < 300 ms",
        ),
        (
            "read + resample 1 week per-second to 1 min, median of 5",
            f"{statistics.median(timings_min) * 1000:.0f} ms | < 300 ms",
        ),
        (
            "read 1 week to 1 min (max) from the minute rollups, median of 5",
            f"{statistics.median(timings_rolled) * 1000:.0f} ms | < 300 ms",
        ),
    ]


def storage(store: MetricsStore, batch: int) -> list[tuple[str, str]]:
    """An hour of five metrics for 20 deployments, inserted while the rollup runs beside it; table sizes after."""
    engine = store.engine
    deployments = [f"fleet-{i:02d}" for i in range(20)]
    for name in deployments:
        add_deployment(engine, name)
    metrics = ["rps", "latency_p95_ms", "cpu_percent", "queue_length", "in_flight"]
    hour_s = 3600
    start_s = float(int(time.time()) // 60 * 60 - hour_s - 600)
    rng = np.random.default_rng(11)
    samples = [
        Sample(name, metric, start_s + second, float(rng.random() * 100))
        for second in range(hour_s)
        for name in deployments
        for metric in metrics
    ]
    inserted_until = [start_s]  # the rollup follows the inserted seconds as it follows time in production
    stop = threading.Event()
    rolled: list[int] = []

    def roll_up_while_inserting() -> None:
        maintenance = Maintenance(engine, RetentionPolicy(rollup_delay_s=60, rollup_chunk_s=60))
        while not stop.is_set():
            minutes, _rows = maintenance.rollup_chunk(inserted_until[0])
            rolled.append(minutes)
            stop.wait(0.2)

    worker = threading.Thread(target=roll_up_while_inserting, daemon=True)
    worker.start()
    began = time.perf_counter()
    for offset in range(0, len(samples), batch):
        chunk = samples[offset : offset + batch]
        store.insert_samples(chunk, now=start_s + hour_s + 60)
        inserted_until[0] = chunk[-1].ts
    insert_rate = len(samples) / (time.perf_counter() - began)
    stop.set()
    worker.join(30)
    Maintenance(engine).rollup_chunk(start_s + hour_s + 300)
    with engine.connect() as connection:
        connection.execute(text("ANALYZE metric_samples"))

        def scalar(sql: str) -> float:
            return float(connection.execute(text(sql)).scalar_one())

        fleet_rows = scalar("SELECT count(*) FROM metric_samples")
        rollup_rows = scalar("SELECT count(*) FROM metric_rollups")
        per_sample = scalar("SELECT pg_total_relation_size('metric_samples')") / fleet_rows
        per_rollup = scalar("SELECT pg_total_relation_size('metric_rollups')") / rollup_rows
    day_raw = per_sample * fleet_rows / len(deployments) * 24
    day_rollup = per_rollup * rollup_rows / len(deployments) * 24
    return [
        (
            f"insert 20 deployments x 5 metrics x 1 h ({len(samples):,} samples) while the rollup runs "
            f"({sum(rolled)} minutes rolled up meanwhile)",
            f"{insert_rate:,.0f} rows/s | >= 50,000 rows/s",
        ),
        ("bytes per per-second sample (table + indexes)", f"{per_sample:.0f} B |"),
        ("bytes per minute rollup (table + indexes)", f"{per_rollup:.0f} B |"),
        (
            "per deployment per day, 5 metrics: per-second samples (kept 2 days, PREWARM_RETENTION_SAMPLES_S)",
            f"{day_raw / 1e6:.1f} MB |",
        ),
        (
            "per deployment per day after rollup (kept 35 days, PREWARM_RETENTION_ROLLUPS_S)",
            f"{day_rollup / 1e3:.0f} kB |",
        ),
        (
            "steady state per deployment (2 days of samples + 35 days of rollups)",
            f"{(2 * day_raw + 35 * day_rollup) / 1e6:.0f} MB |",
        ),
    ]


if __name__ == "__main__":
    main()
