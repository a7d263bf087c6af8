"""Metrics-store benchmark on Postgres: batch insert rate and the time to read + resample a week.

Usage: python -m benchmarks.store_bench [--postgres-url URL]
Creates a scratch database on the server, measures, and drops it. Prints a Markdown table.
Goals (issue 2): >= 50,000 rows/s insert; < 300 ms to read and resample a week of per-second samples.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from prewarm.db import migrate
from prewarm.db.engine import create_engine_for_url
from prewarm.db.store import MetricsStore, Sample
from tests.helpers import add_deployment

WEEK_S = 7 * 86_400


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch", type=int, default=5_000, help="samples per insert_samples call")
    args = parser.parse_args()

    admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    name = f"prewarm_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        engine = create_engine_for_url(url)
        add_deployment(engine, "bench")
        store = MetricsStore(engine)
        rows = [(f"{label}", value) for label, value in run(store, args.batch)]
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print("| measure (Postgres) | result | goal |")
    print("|---|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")


def run(store: MetricsStore, batch: int) -> list[tuple[str, str]]:
    now = time.time()
    start_s = float(int(now) - WEEK_S - 60)
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
    ]


if __name__ == "__main__":
    main()
