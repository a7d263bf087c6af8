"""Scale to zero, live: time to first byte of the first requests after an idle period at zero (docs/zero.md).

Real processes: a controller (loop, API, local backend running ``digits_mlp`` replicas) and a gateway (nginx data
plane by default, with the activator), one fresh stack and SQLite store per case. Each round waits until the
deployment is at zero (0 replicas asked for, 0 ready), stays idle ``--idle-s``, then sends a burst of ``--burst``
concurrent requests and measures each one's time to first byte (response head) and status. Cases:
- ``no activator``: today's gateway at zero (503 + Retry-After at once), the baseline;
- ``cold``: the activator holds the burst, pushes to the controller, a replica starts from nothing;
- ``warm pool``: the policy keeps one parked replica (``warm_pool_size: 1``), which joins;
- ``predictive``: a forecast stored before the round says traffic at T; the controller wakes a replica before T,
  the burst is sent at T.
The replica's own startup (its ``ready`` events: spawn to readiness, model loaded and warmed) is printed beside.

    python -m benchmarks.zero_bench [--rounds 6] [--idle-s 3] [--burst 5] [--proxy nginx] [--cases cold,...]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import select

from controller.policy import ScalingPolicy
from prewarm.db import migrate
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.models import Deployment, ForecastPoint, ForecastRun, ReplicaEvent
from prewarm.demo.stack import LocalStack

NAME = "zero"
MODEL = "digits_mlp"
INFER = f"/v2/models/{MODEL}/infer"
BODY = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
CASES = ("no activator", "cold", "warm pool", "predictive")

# Short windows so that a round (back to zero, idle, burst) takes seconds; the same for every case.
POLICY: dict[str, Any] = {
    "min_replicas": 0, "max_replicas": 2, "decision_interval_s": 0.5, "stable_window_s": 4.0,
    "panic_window_s": 2.0, "scale_down_stabilisation_s": 1.0, "forecast_scale_down_stabilisation_s": 1.0,
    "lead_time_margin_s": 1.0, "horizon_s": 1.0, "forecast_min_history_s": 0.0,
}  # fmt: skip
if "scale_to_zero_grace_s" in ScalingPolicy.model_fields:  # decide()'s scale-to-zero step (docs/zero.md)
    POLICY["scale_to_zero_grace_s"] = 2.0


@dataclass
class CaseResult:
    case: str
    first_ttfb_ms: list[float] = field(default_factory=list)  # the first request of each round's burst
    over_startup_ms: list[float] = field(default_factory=list)  # cold: its TTFB minus the startup of its replica
    sent: int = 0
    failed: int = 0
    startup_ms: list[float] = field(default_factory=list)


def _request(client: httpx.Client) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        with client.stream("POST", INFER, json=BODY, timeout=60) as response:
            ttfb = time.perf_counter() - started  # the response head has arrived
            response.read()
            return response.status_code, ttfb * 1000
    except httpx.HTTPError:
        return 0, (time.perf_counter() - started) * 1000


def _burst(url: str, count: int) -> list[tuple[int, float]]:
    """``count`` requests sent at once (own connections); the first submitted is the first measured."""
    clients = [httpx.Client(base_url=url) for _ in range(count)]
    try:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(_request, clients))
    finally:
        for client in clients:
            client.close()


def _status(stack: LocalStack) -> dict[str, Any]:
    result: dict[str, Any] = stack.call("GET", f"/deployments/{NAME}/status")
    return result


def _wait_at_zero(stack: LocalStack, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _status(stack)
        if status.get("current_replicas") == 0 and status.get("ready_replicas") == 0:
            return
        time.sleep(0.2)
    last = status.get("last_decision") or {}
    raise RuntimeError(
        f"the deployment did not return to zero within {timeout_s:.0f} s: current {status.get('current_replicas')}, "
        f"ready {status.get('ready_replicas')}, last decision {last.get('reasons')}"
    )


def _wait_parked(state_dir: Path, timeout_s: float = 120.0) -> None:
    from inference.gateway.registry import read_registry

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snapshot = read_registry(state_dir / NAME / "replicas.json")
        if snapshot is not None and any(r.state == "parked" for r in snapshot.replicas):
            return
        time.sleep(0.1)
    raise RuntimeError("no replica was parked in the warm pool")


def _store_forecast(database_url: str, traffic_at: float, rps: float = 3.0, lasting_s: float = 3.0) -> None:
    """A forecast made now: ``rps`` in [traffic_at, traffic_at + lasting_s), nothing before or after."""
    engine = create_engine_for_url(database_url)
    now = time.time()
    ts = np.arange(np.floor(now) - 5, now + 600, 1.0)
    upper = np.where((ts >= np.floor(traffic_at)) & (ts < traffic_at + lasting_s), rps, 0.0)
    try:
        with session_factory(engine)() as session, session.begin():
            deployment_id = session.scalars(select(Deployment.id).where(Deployment.name == NAME)).one()
            run = ForecastRun(
                deployment_id=deployment_id, created_at=datetime.fromtimestamp(now, UTC), model_name="bench",
                step_s=1.0, horizon_s=600.0, detail={"history_points": 100_000, "history_peak_rps": rps},
            )  # fmt: skip
            session.add(run)
            session.flush()
            session.add_all(
                ForecastPoint(run_id=run.id, target_ts=datetime.fromtimestamp(float(t), UTC), point=float(u),
                              lower=0.0, upper=float(u))
                for t, u in zip(ts, upper, strict=True)
            )  # fmt: skip
    finally:
        engine.dispose()


def _startups_ms(database_url: str, after: float | None = None) -> list[float]:
    """Startup (spawn to ready) of every replica that became ready (after ``after``, epoch s), oldest first."""
    engine = create_engine_for_url(database_url)
    query = select(ReplicaEvent.duration_s).where(ReplicaEvent.event == "ready", ReplicaEvent.duration_s.is_not(None))
    if after is not None:
        query = query.where(ReplicaEvent.ts > datetime.fromtimestamp(after, UTC))
    try:
        with session_factory(engine)() as session:
            rows = session.scalars(query.order_by(ReplicaEvent.ts)).all()
        return [float(v) * 1000 for v in rows if v is not None]
    finally:
        engine.dispose()


def run_case(case: str, rounds: int, idle_s: float, burst: int, proxy: str, workdir: Path) -> CaseResult:
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{workdir / 'store.db'}"
    migrate.upgrade(database_url)
    token = secrets.token_hex(8)
    stack = LocalStack(workdir=workdir, database_url=database_url, admin_token=token)
    stack.extra_env = {
        "PREWARM_FORECASTS_ENABLED": "false",
        "PREWARM_METRICS_FLUSH_INTERVAL_S": "1",
        "PREWARM_ACTIVATOR_ENABLED": "false" if case == "no activator" else "true",
        "PREWARM_ACTIVATOR_CONTROLLER_URL": stack.api_url,
        "PREWARM_ACTIVATOR_TOKEN": token,
        "PREWARM_ACTIVATOR_MAX_WAIT_S": "30",
    }
    result = CaseResult(case)
    policy = {**POLICY, "warm_pool_size": 1 if case == "warm pool" else 0}
    try:
        stack.start_controller(tick_s=0.1)
        stack.call("POST", "/deployments", {
            "name": NAME, "model": MODEL, "backend": "local",
            "backend_config": {"model_repo": str(Path("models/onnx").resolve())}, "policy": policy,
        })  # fmt: skip
        stack.start_gateway(NAME, proxy)
        for _ in range(rounds):
            _wait_at_zero(stack)
            if case == "warm pool":
                _wait_parked(stack.replica_state_dir)
            time.sleep(idle_s)
            if case == "predictive":
                startup_s = statistics.median(_startups_ms(database_url) or [2000.0]) / 1000
                traffic_at = time.time() + startup_s + 4.0  # more than the lead time (startup + 1 s margin + 1 s)
                _store_forecast(database_url, traffic_at)
                time.sleep(max(0.0, traffic_at - time.time()))
            sent_at = time.time()
            results = _burst(stack.gateway_url, burst)
            result.first_ttfb_ms.append(results[0][1])
            if case == "cold":
                time.sleep(1.5)  # the replica's ready event reaches the store
                own = _startups_ms(database_url, after=sent_at)
                if own:
                    result.over_startup_ms.append(results[0][1] - own[0])
            result.sent += len(results)
            result.failed += sum(1 for status, _ in results if status != 200)
        result.startup_ms = _startups_ms(database_url)
    finally:
        stack.stop()
    return result


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def table(results: list[CaseResult]) -> str:
    startup_all = [v for r in results for v in r.startup_ms]
    startup_p50 = _pct(startup_all, 50)
    lines = [
        "| case | rounds | first request TTFB p50 ms | p95 ms | replica startup p50 ms | TTFB - own replica's startup "
        "p50 / p95 ms | failed / sent | goal | met |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        p50, p95 = _pct(r.first_ttfb_ms, 50), _pct(r.first_ttfb_ms, 95)
        startup = _pct(r.startup_ms, 50) if r.startup_ms else startup_p50
        over = (
            f"{_pct(r.over_startup_ms, 50):,.0f} / {_pct(r.over_startup_ms, 95):,.0f}" if r.over_startup_ms else ""
        )
        if r.case == "cold":
            over_p95 = _pct(r.over_startup_ms, 95)
            goal, met = "no failure, TTFB <= own startup + 100 ms (p95)", r.failed == 0 and over_p95 <= 100
        elif r.case == "warm pool":
            goal, met = "no failure, p95 < 300 ms", r.failed == 0 and p95 < 300
        elif r.case == "predictive":
            goal, met = "no failure, p95 < 50 ms", r.failed == 0 and p95 < 50
        else:
            goal, met = "(baseline)", None
        lines.append(
            f"| {r.case} | {len(r.first_ttfb_ms)} | {p50:,.0f} | {p95:,.0f} | {startup:,.0f} | {over} | {r.failed} / {r.sent} "
            f"| {goal} | {'' if met is None else ('yes' if met else 'NO')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="Idle periods per case.")
    parser.add_argument("--idle-s", type=float, default=3.0, help="Seconds at zero before each burst.")
    parser.add_argument("--burst", type=int, default=5, help="Concurrent requests after each idle period.")
    parser.add_argument("--proxy", choices=["nginx", "python"], default="nginx", help="The gateway's data plane.")
    parser.add_argument("--cases", default=",".join(CASES), help=f"Comma-separated, of: {', '.join(CASES)}.")
    parser.add_argument("--workdir", default=None, help="Keep the stacks' logs and stores here (default: temporary).")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="prewarm-zero-bench-") as tmp:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        for index, case in enumerate(cases):
            results.append(run_case(case, args.rounds, args.idle_s, args.burst, args.proxy, root / str(index)))
    print(f"{args.rounds} idle periods of {args.idle_s:g} s per case, bursts of {args.burst}, {args.proxy} data plane")
    print(table(results))


if __name__ == "__main__":
    main()
