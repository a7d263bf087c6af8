"""``prewarm demo``: a day of real traffic through the whole stack in a few minutes, then live vs. simulator.

1. Migrate the database (the embedded SQLite file by default) and start the controller (API, loop, scheduled
   forecasts, local replicas) and the gateway.
2. Create the deployment with a policy for the replay and store the days before the replayed one as history (the
   forecaster learns the daily shape from them).
3. Replay the day through the gateway with the open-loop load generator, showing a live line per second.
4. Print what happened beside what ``prewarm simulate`` predicts for the same replay, then stop everything.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from prewarm.demo import live
from prewarm.demo.compare import Figures
from prewarm.demo.replay import ReplayPlan, per_second, plan_days
from prewarm.demo.stack import LocalStack, StackError

logger = logging.getLogger(__name__)

DEPLOYMENT = "digits"


@dataclass(frozen=True)
class DemoOptions:
    trace: Path
    live_day: int = 10
    history_days: int = 7
    compression: float = 360.0
    service_time_ms: float = (
        20.0  # each request holds its replica this long: a replica serves 1000/20 = 50 rps
    )
    capacity_rps: float = 40.0  # planned per-replica capacity (rps at the SLO), below the 50 rps ceiling
    capacity_mode: str = "configured"  # "learned": the policy learns the capacity, starting from capacity_start_rps
    capacity_start_rps: float | None = None  # the policy's replica_capacity_rps (default: capacity_rps)
    target_utilisation: float = 0.7
    peak_replicas: int = 8  # the live day's peak needs this many replicas at the target utilisation
    max_replicas: int = 14
    workdir: Path = Path("var/demo")
    database_url: str = "sqlite:///prewarm.db"
    quiet: bool = False

    @property
    def peak_rps(self) -> float:
        return self.peak_replicas * self.capacity_rps * self.target_utilisation


def demo_policy(options: DemoOptions) -> dict[str, Any]:
    """The scaling policy for the compressed replay: windows in replay seconds (one second = 6 trace minutes)."""
    return {
        "min_replicas": 1,
        "max_replicas": options.max_replicas,
        "replica_capacity_rps": options.capacity_start_rps or options.capacity_rps,
        "capacity_mode": options.capacity_mode,
        "capacity_probe_interval_s": 3600 / options.compression,  # a learned capacity probes once a trace hour
        "target_utilisation": options.target_utilisation,
        "default_replica_startup_s": 2.0,
        "lead_time_margin_s": 1.0,
        "horizon_s": 2.0,
        "decision_interval_s": 1.0,
        "stable_window_s": 6.0,
        "panic_window_s": 2.0,
        "max_metrics_age_s": 10.0,
        "scale_down_stabilisation_s": 10.0,
        "forecast_scale_down_stabilisation_s": 3.0,
        "forecast_min_history_s": 86_400 / options.compression,  # one day of the trace
        "forecast_step_s": 1.0,
        "forecast_history_s": (options.history_days + 1) * 86_400 / options.compression,
        "forecast_refit_interval_s": 5.0,
        "forecast_max_age_s": 30.0,
        "forecast_model": "profile",
        "forecast_time_compression": options.compression,
    }


def demo_plan(options: DemoOptions) -> ReplayPlan:
    """The replay of ``options``: its trace's live day and the days before it, compressed and scaled."""
    from prewarm.traces import load_trace

    return plan_days(
        load_trace(options.trace),
        live_day=options.live_day,
        history_days=options.history_days,
        compression=options.compression,
        peak_rps=options.peak_rps,
    )


class Printer:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)


@dataclass(frozen=True)
class DemoResult:
    """What a demo run measured live and what the simulator predicted for the same replay."""

    plan: ReplayPlan
    outcome: ReplayOutcome
    live: Figures
    simulated: Figures
    table: str


Tick = Callable[[LocalStack, float], None]  # called about once a second during the replay with the elapsed s


def run_demo(options: DemoOptions, on_tick: Tick | None = None) -> DemoResult:
    """Run the demo end to end and return its figures; the stack is always stopped, even on Ctrl-C."""
    from prewarm.db import migrate
    from prewarm.db.engine import create_engine_for_url
    from prewarm.db.store import MetricsStore
    from prewarm.demo.compare import compare

    say = Printer(options.quiet)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = demo_plan(options)
    say(f"prewarm demo: {plan.trace.name}, day {options.live_day} replayed {options.compression:g}x faster "
        f"(one day in {plan.live_replay_s:.0f} s), rates x{plan.scale:.1f} (peak {options.peak_rps:.0f} rps)")  # fmt: skip
    migrate.upgrade(options.database_url)
    engine = create_engine_for_url(options.database_url)
    store = MetricsStore(engine)
    stack = LocalStack(
        workdir=options.workdir,
        database_url=options.database_url,
        admin_token=secrets.token_urlsafe(24),
        extra_env={
            "PREWARM_REPLICA_SERVICE_TIME_MS": f"{options.service_time_ms:g}",
            "PREWARM_GATEWAY_MAX_IN_FLIGHT_PER_REPLICA": "1",
            "PREWARM_GATEWAY_QUEUE_CAPACITY": "10000",
            "PREWARM_METRICS_FLUSH_INTERVAL_S": "1",
            "PREWARM_FORECAST_POLL_INTERVAL_S": "1",
            "PREWARM_LOG_LEVEL": "INFO",
        },
    )
    try:
        stack.start_controller()
        say(f"controller: {stack.api_url}/api/v1 (dashboard: {stack.api_url}/dashboard/deployments/{DEPLOYMENT})")
        setup_deployment(stack, options, plan)
        stack.start_gateway(DEPLOYMENT)
        say(f"gateway:    {stack.gateway_url}/v2/models/digits_mlp/infer (logs in {options.workdir}/)")
        wait_ready(stack.gateway_url, timeout_s=60)
        outcome = replay(stack, store, plan, say, on_tick)
        live_figures, simulated, table = compare(engine, store, plan, options, outcome)
        return DemoResult(plan, outcome, live_figures, simulated, table)
    finally:
        leftovers = stack.stop()
        say(f"stopped: controller, gateway and replicas ({'no' if not leftovers else len(leftovers)} "
            "leftover processes)")  # fmt: skip
        engine.dispose()


def setup_deployment(stack: LocalStack, options: DemoOptions, plan: ReplayPlan) -> None:
    """A fresh deployment with the replay's policy, and the days before the replayed one stored as history."""
    stack.call("DELETE", f"/deployments/{DEPLOYMENT}", expect=(204, 404))
    stack.call(
        "POST",
        "/deployments",
        {
            "name": DEPLOYMENT,
            "model": "digits_mlp",
            "backend": "local",
            "backend_config": {},
            "min_replicas": 1,
            "max_replicas": options.max_replicas,
            "policy": demo_policy(options),
        },
    )
    history = per_second(plan.history_rates_rps(), plan.interval_replay_s)
    end = math.floor(time.time())
    stamps = end - len(history) + np.arange(len(history))
    samples = [
        {"metric": "rps", "ts": float(t), "value": float(v)} for t, v in zip(stamps, history, strict=True)
    ]
    for first in range(0, len(samples), 5000):
        stack.call("POST", f"/deployments/{DEPLOYMENT}/samples", {"samples": samples[first : first + 5000]})
    stack.call("POST", f"/deployments/{DEPLOYMENT}/forecasts:refresh")


def wait_ready(gateway_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{gateway_url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StackError(f"no replica became ready behind the gateway within {timeout_s:.0f} s")


@dataclass
class ReplayOutcome:
    started_at: float
    seconds: int
    intended_s: np.ndarray
    latency_s: np.ndarray
    status: np.ndarray
    send_slip_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # how late each request left
    decision_lag: tuple[dict[float, float], float] = ({}, 0.0)  # the controller's lag histogram over the replay


def replay(
    stack: LocalStack, store: Any, plan: ReplayPlan, say: Printer, on_tick: Tick | None
) -> ReplayOutcome:
    """Send the live day through the gateway (open loop) and print a line a second while it runs.

    Ctrl-C ends it: besides the usual KeyboardInterrupt, the signal is remembered and checked every second, so an
    interrupt that a library swallowed on its way up (one full-suite run went on replaying for 90 s after SIGINT)
    still stops the replay."""
    from inference.loadgen import RateStep, run_open_loop
    from inference.testing import digits_body

    schedule = [RateStep(plan.interval_replay_s, float(rate)) for rate in plan.live_rates_rps()]
    url = f"{stack.gateway_url}/v2/models/digits_mlp/infer"
    result: dict[str, Any] = {}

    def send() -> None:
        result["load"] = run_open_loop(url, digits_body(), schedule, connections=128, timeout_s=10.0)

    lag_before = controller_lag(stack)
    started_at = time.time()
    sender = threading.Thread(target=send, name="loadgen", daemon=True)
    sender.start()
    say(
        f"{'t':>4} {'trace':>5} {'offered':>8} {'served':>7} {'forecast':>9} {'ready/desired':>13} {'p95':>7}  last decision"
    )
    rates = per_second(plan.live_rates_rps(), plan.interval_replay_s)
    with _ctrl_c_remembered() as interrupted:
        while sender.is_alive():
            sender.join(timeout=1.0)
            if interrupted.is_set():
                raise KeyboardInterrupt
            if not sender.is_alive():
                break
            elapsed = time.time() - started_at
            if on_tick is not None:
                on_tick(stack, elapsed)
            second = min(int(elapsed), len(rates) - 1)
            say(live_line(stack, store, plan, elapsed, float(rates[second]), time.time()))
    load = result["load"]
    return ReplayOutcome(
        started_at, len(rates), load.intended_s, load.latency_s, load.status, load.send_slip_s(),
        decision_lag_during(stack, lag_before),
    )  # fmt: skip


@contextlib.contextmanager
def _ctrl_c_remembered() -> Iterator[threading.Event]:
    """An event set by SIGINT (which still raises KeyboardInterrupt); the previous handler is restored after."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted  # only the main thread may handle signals; it then gets the interrupt as usual
        return

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def decision_lag_during(stack: LocalStack, before: tuple[dict[float, float], float]) -> tuple[dict[float, float], float]:
    """The controller's decision-lag histogram over the replay (its /metrics now minus at the start)."""
    after = controller_lag(stack)
    buckets = {bound: count - before[0].get(bound, 0.0) for bound, count in after[0].items()}
    return buckets, after[1] - before[1]


def controller_lag(stack: LocalStack) -> tuple[dict[float, float], float]:
    from controller.loop_metrics import decision_lag_histogram

    try:
        return decision_lag_histogram(httpx.get(f"{stack.api_url}/metrics", timeout=10).text)
    except httpx.HTTPError:
        return {}, 0.0


def live_line(
    stack: LocalStack, store: Any, plan: ReplayPlan, elapsed: float, offered: float, now: float
) -> str:
    snap = live.snapshot(store, DEPLOYMENT, now - 1)
    try:
        status = stack.call("GET", f"/deployments/{DEPLOYMENT}/status")
    except (StackError, httpx.HTTPError):
        status = {}
    desired = status.get("desired_replicas")
    last = status.get("last_decision") or {}
    reasons = [str(r) for r in last.get("reasons") or []]
    # the reason of the step that set the count (e.g. "predictive: upper forecast ..."), else the last one
    source = str(last.get("source") or "")
    reason = next(
        (r for r in reversed(reasons) if r.startswith(source + ":")), reasons[-1] if reasons else ""
    )
    trace_minutes = elapsed * plan.compression / 60
    clock = f"{int(trace_minutes // 60) % 24:02d}:{int(trace_minutes % 60):02d}"

    def number(value: float, unit: str) -> str:
        return f"{value:.0f} {unit}" if math.isfinite(value) else "-"

    ready = "-" if not math.isfinite(snap.ready) else f"{snap.ready:.0f}"
    return (
        f"{elapsed:4.0f} {clock:>5} {offered:5.0f} rps {number(snap.rps, ''):>7} {number(snap.forecast_upper_rps, ''):>9} "
        f"{ready + '/' + str(desired if desired is not None else '-'):>13} {number(snap.p95_ms, 'ms'):>7}  {reason[:100]}"
    )
