"""End to end on real Postgres with real processes (controller, gateway, local replicas), time-compressed.

1. A real day (NASA trace) replayed 720x faster: forecastable surges are met by replicas ready before them, and the
   live stack agrees with the simulator on replica-minutes and SLO violations.
2. A synthetic day with a surge the history never showed: the reactive path catches it within 30 s; an admin pin
   made over HTTP holds until it expires; a replica killed with SIGKILL is replaced with no failed requests beyond
   the bound (0.1 % of those sent around the kill).
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from prewarm.demo.run import DemoOptions, DemoResult, run_demo
from prewarm.demo.stack import LocalStack
from prewarm.traces import TRACES_DIR

pytestmark = pytest.mark.slow

NASA = TRACES_DIR / "nasa_http_jul1995_1min.csv"


def test_a_real_day_is_met_before_its_surges_and_matches_the_simulator(
    postgres_url: str, tmp_path: Path
) -> None:
    options = DemoOptions(
        trace=NASA, live_day=10, history_days=3, compression=720.0, peak_replicas=6,
        workdir=tmp_path / "stack", database_url=postgres_url, quiet=True,
    )  # fmt: skip
    result = run_demo(options)
    live, sim = result.live, result.simulated
    print(result.table)
    assert live.errors <= 0.001 * (live.served + live.errors)
    assert live.surge_leads, "the day has surges"
    assert live.surges_covered_before >= math.ceil(0.5 * len(live.surge_leads))
    assert live.saving > 0.3  # far cheaper than provisioning for the peak
    # The simulator is worth believing only if it matches the live system (issue 9: within 25 %).
    assert live.replica_minutes == pytest.approx(sim.replica_minutes, rel=0.25)
    # Shares this small are compared in seconds: 25 % of the larger share, or 3 of the replay's seconds. Identical
    # live runs differ by that much among themselves (0-3 violating seconds in nine runs on a quiet machine: ~100 ms
    # stalls on the request path delay every request in flight, away from any scale event; docs/simulator.md), which
    # the simulator does not model: a tighter bound would test that noise, not the scaling.
    allowed = max(0.25 * max(live.violation_share, sim.violation_share), 3 / result.outcome.seconds)
    assert abs(live.violation_share - sim.violation_share) <= allowed, (
        f"violating replay seconds: live {live.violating_at}, simulated {sim.violating_at}"
    )


def _synthetic_trace(path: Path, days: int) -> Path:
    """Flat 20 % load all day, every day; the last day alone has a surge to 100 % from 12:00 to 20:00."""
    minutes = np.arange(days * 1440)
    rate = np.full(minutes.shape, 20.0)
    live_day = minutes >= (days - 1) * 1440
    surge = live_day & ((minutes % 1440) >= 12 * 60) & ((minutes % 1440) < 20 * 60)
    rate[surge] = 100.0
    rows = "\n".join(f"{60 * int(m)},{int(r)}" for m, r in zip(minutes, rate, strict=True))
    path.write_text("timestamp,requests\n" + rows + "\n")
    return path


class Script:
    """What the test does during the replay: pin over HTTP, kill a replica, and watch the status."""

    def __init__(self, compression: float) -> None:
        self.seconds_per_trace_hour = 3600 / compression
        self.pin_at_s = 2.5 * self.seconds_per_trace_hour  # 02:30, night: one replica would do
        self.pin_for_s = 12.0
        self.kill_at_s = 21.5 * self.seconds_per_trace_hour  # 21:30, after the surge
        self.pinned: list[tuple[float, int | None, int | None]] = []
        self.after_pin: list[tuple[float, str | None]] = []
        self.ready_log: list[tuple[float, int]] = []
        self.killed_at: float | None = None
        self.killed_pid: int | None = None
        self.pin_made = False

    def __call__(self, stack: LocalStack, elapsed: float) -> None:
        status: dict[str, Any] = stack.call("GET", "/deployments/digits/status")
        self.ready_log.append((elapsed, int(status.get("ready_replicas") or 0)))
        if not self.pin_made and elapsed >= self.pin_at_s:
            stack.call("POST", "/deployments/digits/overrides", {
                "kind": "pin", "value": 3, "duration_s": self.pin_for_s, "reason": "end-to-end test event",
            })  # fmt: skip
            self.pin_made = True
            self.pin_started = elapsed
        if self.pin_made and self.pin_started + 2 <= elapsed < self.pin_started + self.pin_for_s - 1:
            self.pinned.append((elapsed, status.get("desired_replicas"), status.get("ready_replicas")))
        elif self.pin_made and elapsed > self.pin_started + self.pin_for_s + 1:
            self.after_pin.append((elapsed, (status.get("last_decision") or {}).get("source")))
        if self.killed_at is None and elapsed >= self.kill_at_s:
            replicas = [p for p in _stack_processes(stack) if "replica" in " ".join(p.cmdline())]
            assert replicas, "no replica process to kill"
            victim = replicas[0]
            self.killed_pid = victim.pid
            os.kill(victim.pid, signal.SIGKILL)
            self.killed_at = elapsed


def _stack_processes(stack: LocalStack) -> list[psutil.Process]:
    marker = str(stack.workdir.resolve())
    found = []
    for process in psutil.process_iter(["environ"]):
        try:
            if (process.info.get("environ") or {}).get("PREWARM_STACK_DIR") == marker:
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_unforecast_surge_pin_and_replica_crash(postgres_url: str, tmp_path: Path) -> None:
    compression = 1440.0  # a day in 60 s
    options = DemoOptions(
        trace=_synthetic_trace(tmp_path / "synthetic.csv", days=3), live_day=2, history_days=2,
        compression=compression, peak_replicas=5, workdir=tmp_path / "stack", database_url=postgres_url, quiet=True,
    )  # fmt: skip
    script = Script(compression)
    result: DemoResult = run_demo(options, on_tick=script)
    outcome = result.outcome

    # The pin made over HTTP holds while it lasts (desired 3, and 3 ready once they have started) ...
    assert script.pinned, "the pin was never observed"
    assert all(desired == 3 for _, desired, _ in script.pinned), script.pinned
    assert any(ready == 3 for _, _, ready in script.pinned)
    # ... and stops applying by itself when it expires.
    assert script.after_pin and all(source != "pin" for _, source in script.after_pin)

    # The surge (12:00 in the trace) was never in the history: the reactive path must add capacity within 30 s.
    surge_start = 12 * 3600 / compression
    level = float(result.plan.live_rates_rps().max())
    needed = math.ceil(level / options.capacity_rps)
    caught = [t for t, ready in script.ready_log if t >= surge_start and ready >= needed]
    assert caught and caught[0] - surge_start <= 30.0, script.ready_log

    # The replica killed with SIGKILL: requests sent from 1 s before to 5 s after it barely notice.
    assert script.killed_at is not None
    window = (outcome.intended_s >= script.killed_at - 1) & (outcome.intended_s < script.killed_at + 5)
    failed = int((outcome.status[window] != 200).sum())
    assert failed <= max(1, math.floor(0.001 * int(window.sum())))
    # ... and is replaced: the backend records the failure and a new replica is ready within 5 s.
    killed_epoch = outcome.started_at + script.killed_at
    events = _replica_events(postgres_url)
    failed_at = [ts for event, ts, _ in events if event == "failed" and ts >= killed_epoch - 1]
    assert failed_at, events
    ready_after = [ts for event, ts, _ in events if event == "ready" and ts > failed_at[0]]
    assert ready_after and ready_after[0] - killed_epoch <= 5.0


def _replica_events(database_url: str) -> list[tuple[str, float, float | None]]:
    from sqlalchemy import select

    from prewarm.db.engine import create_engine_for_url
    from prewarm.db.models import ReplicaEvent

    engine = create_engine_for_url(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(ReplicaEvent.event, ReplicaEvent.ts, ReplicaEvent.duration_s).order_by(ReplicaEvent.ts)
            ).all()
    finally:
        engine.dispose()
    return [(event, ts.timestamp(), duration) for event, ts, duration in rows]


def test_ctrl_c_stops_the_demo_and_leaves_no_process(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    workdir = tmp_path / "stack"
    # Unbuffered, so the live view arrives as it is printed; a day of 240 s, so Ctrl-C comes long before its end even
    # when a busy machine delays the first lines (at 1440x a run once finished before the signal arrived).
    env = {**os.environ, "PREWARM_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "prewarm.cli",
        "demo",
        "--workdir",
        str(workdir),
        "--compression",
        "360",
    ]
    demo = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the replay is under way (the live view prints)
        line = demo.stdout.readline()
        lines.append(line)
        if "last decision" in line:
            break
    else:
        demo.kill()
        raise AssertionError("".join(lines[-30:]))
    time.sleep(3)
    marker_processes = _stack_processes(LocalStack(workdir, "", ""))
    assert any("replica" in " ".join(p.cmdline()) for p in marker_processes)  # replicas were running
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=90)
    assert demo.returncode == 130, output[-2000:]
    assert "no leftover processes" in output
    assert _stack_processes(LocalStack(workdir, "", "")) == []
