"""Fleet benchmark: how many deployments one (and two) ``prewarm controller`` processes decide on time.

Usage: python -m benchmarks.fleet_bench [--deployments 1000] [--controllers 1 2] [--seconds 60] [--sweep 500,1000]

On Postgres (a scratch database, dropped at the end), with the dry-run backend: N deployments with a 5 s decision
interval, each fed per-second samples (rps, p95 latency, CPU) into the metrics store by a separate feeder process,
as the gateway's collectors would. Each controller runs as a real process (forecasts off: this measures the loop).
After a warm-up, the controllers' /metrics are read at the start and end of the measured window:

- decisions per second against the N / 5 asked for;
- decision lag (when a decision ran minus when it was due), p50 and p99 from the lag histogram;
- CPU per decision (the controllers' user+system time over the window / decisions), and where the time goes: the
  pass (reading the due deployments' inputs and samples, dispatching), the reconciles (backend reads, decide(),
  scale calls), the recording of decisions and statuses; beside it the CPU of Postgres and of the feeder.

Goal (issue 13): 1,000 deployments at a 5 s interval on this 2-core machine with p99 lag <= 1 s while ingesting
their samples; ``--sweep`` reports the largest N that holds it.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from controller.loop_metrics import histogram_quantile
from prewarm.db import migrate
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.models import Deployment, Policy

INTERVAL_S = 5.0
METRICS = ("rps", "latency_p95_ms", "cpu_percent")


@dataclass
class Scrape:
    decisions: float
    lag_buckets: dict[float, float]
    lag_count: float
    sums: dict[str, float]  # histogram sums: pass, reconcile, record
    counts: dict[str, float]


@dataclass
class Result:
    deployments: int
    controllers: int
    seconds: float
    decisions_per_s: float
    asked_per_s: float
    lag_p50_s: float
    lag_p99_s: float
    cpu_ms_per_decision: float
    pass_ms_per_s: float
    reconcile_ms_per_decision: float
    record_ms_per_s: float
    postgres_cpu: float  # cores
    feeder_cpu: float
    controller_cpu: float

    @property
    def holds_goal(self) -> bool:
        return self.lag_p99_s <= 1.0 and self.decisions_per_s >= 0.95 * self.asked_per_s


def scrape(url: str) -> Scrape:
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)}
    decisions = sum(
        s.value for s in families["prewarm_controller_decisions"].samples if s.name.endswith("_total")
    )
    lag: dict[float, float] = {}
    lag_count = 0.0
    for sample in families["prewarm_controller_decision_lag_seconds"].samples:
        if sample.name.endswith("_bucket"):
            lag[float(sample.labels["le"])] = sample.value
        elif sample.name.endswith("_count"):
            lag_count = sample.value
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for key, family in (
        ("pass", "prewarm_controller_pass_duration_seconds"),
        ("reconcile", "prewarm_controller_reconcile_duration_seconds"),
        ("record", "prewarm_controller_record_duration_seconds"),
    ):
        for sample in families[family].samples:
            if sample.name.endswith("_sum"):
                sums[key] = sample.value
            elif sample.name.endswith("_count"):
                counts[key] = sample.value
    return Scrape(decisions, lag, lag_count, sums, counts)


def create_fleet(url: str, count: int) -> None:
    engine = create_engine_for_url(url)
    spec = {"decision_interval_s": INTERVAL_S, "min_replicas": 1, "max_replicas": 20}
    from controller.policy import ScalingPolicy

    policy = ScalingPolicy.model_validate(spec).model_dump(mode="json")
    with session_factory(engine)() as session:
        for i in range(count):
            deployment = Deployment(
                name=f"model-{i:05d}", model="digits_mlp", backend="dry-run",
                backend_config={"initial_replicas": 2}, min_replicas=1, max_replicas=20,
            )  # fmt: skip
            session.add(deployment)
            session.flush()
            session.add(Policy(deployment_id=deployment.id, version=1, spec=policy, author="bench"))
        session.commit()
    engine.dispose()


def feed(url: str, count: int) -> None:
    """Every second, one sample per metric per deployment for the second just ended (the feeder process)."""
    import numpy as np

    from prewarm.db.store import MetricsStore, Sample

    engine = create_engine_for_url(url)
    store = MetricsStore(engine)
    names = [f"model-{i:05d}" for i in range(count)]
    rng = np.random.default_rng(1)
    base = rng.uniform(50, 400, count)
    next_tick = math.floor(time.time()) + 1.0
    while True:
        time.sleep(max(0.0, next_tick - time.time()))
        second = next_tick - 1.0
        wave = 1.0 + 0.3 * math.sin(second / 120.0)
        rps = base * wave * rng.uniform(0.9, 1.1, count)
        samples = [Sample(n, "rps", second, float(r)) for n, r in zip(names, rps, strict=True)]
        samples += [Sample(n, "latency_p95_ms", second, float(20 + r / 20)) for n, r in zip(names, rps, strict=True)]
        samples += [Sample(n, "cpu_percent", second, float(min(100.0, r / 8))) for n, r in zip(names, rps, strict=True)]
        store.insert_samples(samples)
        next_tick += 1.0


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_cpu() -> float:
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] and process.info["name"].startswith("postgres"):
            times = process.info["cpu_times"]
            if times is not None:
                total += times.user + times.system
    return total


def process_cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def run(url: str, count: int, controllers: int, seconds: float, warmup_s: float, log_dir: Path) -> Result:
    env = {**os.environ, "PREWARM_DATABASE_URL": url, "PREWARM_FORECASTS_ENABLED": "false",
           "PREWARM_LOG_LEVEL": "WARNING"}  # fmt: skip
    feeder = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fleet_bench", "--feed", url, "--deployments", str(count)],
        env=env, stdout=subprocess.DEVNULL, stderr=(log_dir / "feeder.log").open("ab"),
    )  # fmt: skip
    ports = [free_port() for _ in range(controllers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "prewarm.cli", "controller", "--port", str(port), "--state-dir", str(log_dir)],
            env={**env, "PREWARM_CONTROLLER_IDENTITY": f"bench-{i}"},
            stdout=subprocess.DEVNULL, stderr=(log_dir / f"controller-{i}.log").open("ab"),
        )
        for i, port in enumerate(ports)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 60
        for target in urls:
            while True:
                try:
                    if httpx.get(f"{target}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"controller at {target} did not become ready; see {log_dir}")
                time.sleep(0.2)
        time.sleep(warmup_s)
        handles = [psutil.Process(p.pid) for p in procs]
        feeder_handle = psutil.Process(feeder.pid)
        before = [scrape(u) for u in urls]
        cpu_before, pg_before, feed_before = process_cpu(handles), postgres_cpu(), process_cpu([feeder_handle])
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        after = [scrape(u) for u in urls]
        cpu_after, pg_after, feed_after = process_cpu(handles), postgres_cpu(), process_cpu([feeder_handle])
    finally:
        for process in [*procs, feeder]:
            process.send_signal(signal.SIGTERM)
        for process in [*procs, feeder]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    decisions = sum(a.decisions - b.decisions for a, b in zip(after, before, strict=True))
    lag: dict[float, float] = {}
    for a, b in zip(after, before, strict=True):
        for bound, value in a.lag_buckets.items():
            lag[bound] = lag.get(bound, 0.0) + value - b.lag_buckets.get(bound, 0.0)
    lag_count = sum(a.lag_count - b.lag_count for a, b in zip(after, before, strict=True))

    def total(key: str, field: str) -> float:
        return sum(getattr(a, field)[key] - getattr(b, field)[key] for a, b in zip(after, before, strict=True))

    controller_cpu = cpu_after - cpu_before
    return Result(
        deployments=count,
        controllers=controllers,
        seconds=elapsed,
        decisions_per_s=decisions / elapsed,
        asked_per_s=count / INTERVAL_S,
        lag_p50_s=histogram_quantile(lag, lag_count, 0.5),
        lag_p99_s=histogram_quantile(lag, lag_count, 0.99),
        cpu_ms_per_decision=1000 * controller_cpu / max(decisions, 1),
        pass_ms_per_s=1000 * total("pass", "sums") / elapsed,
        reconcile_ms_per_decision=1000 * total("reconcile", "sums") / max(total("reconcile", "counts"), 1),
        record_ms_per_s=1000 * total("record", "sums") / elapsed,
        postgres_cpu=(pg_after - pg_before) / elapsed,
        feeder_cpu=(feed_after - feed_before) / elapsed,
        controller_cpu=controller_cpu / elapsed,
    )


def table(results: list[Result]) -> str:
    lines = [
        "| deployments | controllers | decisions/s (asked) | lag p50 | lag p99 | CPU/decision | controller CPU "
        "| Postgres CPU | feeder CPU | pass ms/s | reconcile ms each | record ms/s | p99 <= 1 s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.deployments:,} | {r.controllers} | {r.decisions_per_s:.1f} ({r.asked_per_s:.0f}) "
            f"| {r.lag_p50_s * 1000:.0f} ms | {r.lag_p99_s * 1000:.0f} ms | {r.cpu_ms_per_decision:.2f} ms "
            f"| {r.controller_cpu:.2f} cores | {r.postgres_cpu:.2f} cores | {r.feeder_cpu:.2f} cores "
            f"| {r.pass_ms_per_s:.0f} | {r.reconcile_ms_per_decision:.2f} | {r.record_ms_per_s:.0f} "
            f"| {'yes' if r.holds_goal else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--controllers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before measuring")
    parser.add_argument("--sweep", default="", help="comma-separated fleet sizes for one controller, e.g. 500,1500")
    parser.add_argument("--feed", default="", help=argparse.SUPPRESS)  # internal: run as the feeder process
    args = parser.parse_args()
    if args.feed:
        feed(args.feed, args.deployments)
        return

    sizes = [(args.deployments, c) for c in args.controllers]
    sizes += [(int(n), 1) for n in args.sweep.split(",") if n.strip()]
    results: list[Result] = []
    admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    log_dir = Path(f"/tmp/prewarm-fleet-bench-{uuid.uuid4().hex[:6]}")
    log_dir.mkdir(parents=True)
    for count, controllers in sizes:
        name = f"prewarm_fleet_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
        try:
            migrate.upgrade(url)
            create_fleet(url, count)
            results.append(run(url, count, controllers, args.seconds, args.warmup, log_dir))
            print(f"measured {count} deployments with {controllers} controller(s)", file=sys.stderr)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} cores (load average at the end {load}); interval {INTERVAL_S:.0f} s; "
          f"{args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up; dry-run backend; samples of "
          f"{len(METRICS)} metrics per deployment per second\n")  # fmt: skip
    print(table(results))
    holding = [r.deployments for r in results if r.controllers == 1 and r.holds_goal]
    if holding:
        print(f"\nLargest fleet one controller decided on time (p99 lag <= 1 s): {max(holding):,} deployments")
    else:
        print("\nNo fleet size measured held p99 lag <= 1 s with one controller")


if __name__ == "__main__":
    main()
