"""The demo replicas' true per-replica capacity at the latency SLO, measured directly: the ground truth for the
learned-capacity benchmark (benchmarks/capacity_bench.py).

Usage: python -m benchmarks.capacity_truth [--replicas 1,4] [--levels 28,32,36,40,44,48] [--seconds 20]

N replicas as ``prewarm demo`` runs them (20 ms service time) behind one Python gateway holding one request per
replica at a time (the rest queue at the gateway), no controller. For each load per replica X, ``--seconds`` of
open-loop traffic at a mean of N*X rps: the demo's own shape (a window of the live day's 1/6 s rate steps, NASA day
10 at 360x, scaled by one factor) and, for comparison, a smooth constant rate. Sub-second bursts make a second's p95
cross the 50 ms SLO below the 1000/20 = 50 rps ceiling; like controller/capacity.py's latency knee, the true
capacity is the load per replica at which half the seconds are bad (p95 of the requests intended in that second
over the SLO), interpolated linearly between the levels.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference.loadgen import LoadResult, RateStep, run_open_loop
from inference.testing import DEFAULT_MODEL, digits_body, free_port, replica_process, stop_process, wait_ok
from prewarm.demo.run import DemoOptions, demo_plan
from prewarm.traces import TRACES_DIR

SLO_P95_MS = 50.0
BAD_SHARE_KNEE = 0.5  # controller/capacity.py: the knee is where most seconds are bad


@dataclass(frozen=True)
class Level:
    replicas: int
    traffic: str  # "demo shape" or "smooth"
    load_rps: float  # offered per replica (what was actually sent / duration / replicas)
    bad_share: float  # share of seconds whose p95 is over the SLO
    p50_ms: float
    p95_ms: float
    errors: int
    slip_p99_ms: float  # the generator's own lateness (sanity: it should stay far below the SLO)
    busy_gaps: int  # completions of requests that had queued (>= 40 ms: they started as the previous one ended)
    busy_gap_ms: float  # median time between such a completion and the previous one: back-to-back service time


def demo_steps(live_day: int | None = None) -> tuple[npt.NDArray[np.float64], float]:
    """The demo's live-day rate steps and their length (s), planned as ``prewarm demo`` does."""
    options = DemoOptions(trace=TRACES_DIR / "nasa_http_jul1995_1min.csv")
    plan = demo_plan(replace(options, live_day=live_day or options.live_day))
    return plan.live_rates_rps(), plan.interval_replay_s


def within_second_cv(rates: npt.NDArray[np.float64], per_second: int) -> float:
    """Mean coefficient of variation of the steps inside each second: how bursty the sub-second shape is."""
    seconds = rates[: len(rates) // per_second * per_second].reshape(-1, per_second)
    means = seconds.mean(axis=1)
    return float(np.mean(seconds[means > 0].std(axis=1) / means[means > 0]))


def per_second_p95_ms(result: LoadResult) -> npt.NDArray[np.float64]:
    """p95 latency of the requests intended in each whole second (failures count as infinitely slow)."""
    latency_ms = np.where(np.isnan(result.latency_s), np.inf, result.latency_s * 1000.0)
    second = np.floor(result.intended_s).astype(int)
    p95 = []
    for s in range(math.floor(result.duration_s + 1e-9)):
        values = latency_ms[second == s]
        if values.size:
            with np.errstate(invalid="ignore"):
                p95.append(float(np.percentile(values, 95)))
    return np.nan_to_num(np.array(p95), nan=np.inf)


def measure(url: str, schedule: list[RateStep], replicas: int, traffic: str) -> Level:
    result = run_open_loop(url, digits_body(), schedule, connections=128, timeout_s=10.0)
    summary = result.summary()
    slip = result.send_slip_s()
    done = np.isfinite(result.latency_s)
    completed = (result.intended_s + result.latency_s)[done]
    order = np.argsort(completed)
    queued = result.latency_s[done][order][1:] >= 0.040
    gaps_ms = np.diff(completed[order])[queued] * 1000.0
    return Level(
        replicas, traffic, summary.offered_rps / replicas, float(np.mean(per_second_p95_ms(result) > SLO_P95_MS)),
        summary.p50_ms, summary.p95_ms, summary.errors, float(np.percentile(slip, 99)) * 1000 if slip.size else 0.0,
        int(gaps_ms.size), float(np.median(gaps_ms)) if gaps_ms.size else math.nan,
    )  # fmt: skip


def knee_rps(levels: list[Level]) -> float | None:
    """The load per replica where the share of bad seconds first reaches 50 % (linear between levels); None when
    it is below the lowest level or above the highest."""
    ordered = sorted(levels, key=lambda level: level.load_rps)
    if ordered[0].bad_share >= BAD_SHARE_KNEE:
        return None
    for low, high in itertools.pairwise(ordered):
        if high.bad_share >= BAD_SHARE_KNEE:
            fraction = (BAD_SHARE_KNEE - low.bad_share) / (high.bad_share - low.bad_share)
            return low.load_rps + fraction * (high.load_rps - low.load_rps)
    return None


def crossing(levels: list[Level]) -> str:
    """``knee_rps`` in words."""
    ordered = sorted(levels, key=lambda level: level.load_rps)
    knee = knee_rps(levels)
    if knee is not None:
        return f"{knee:.1f} rps per replica"
    if ordered[0].bad_share >= BAD_SHARE_KNEE:
        return f"below the lowest level ({ordered[0].load_rps:.1f} rps: {ordered[0].bad_share:.0%} bad)"
    return f"above the highest level ({ordered[-1].load_rps:.1f} rps: {ordered[-1].bad_share:.0%} bad)"


def run_replicas(
    replicas: int,
    loads: list[float],
    seconds: int,
    window: npt.NDArray[np.float64],
    step_s: float,
    tmp: Path,
    smooth: bool = True,
) -> tuple[list[Level], float, float]:
    """All levels, the demo's shape (and smooth traffic), on ``replicas`` fresh replicas behind a fresh gateway;
    also the median latency at 10 rps directly to one replica and through the gateway (the gateway's own cost)."""
    with ExitStack() as stack:
        started = [
            stack.enter_context(replica_process(tmp, extra_args=["--service-time-ms", "20"]))
            for _ in range(replicas)
        ]
        for replica in started:
            replica.wait_ready()
        port = free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "inference.gateway", "--proxy", "python", "--port", str(port), "--no-store",
             *(arg for r in started for arg in ("--upstream", f"127.0.0.1:{r.port}"))],
            stdout=open(tmp / f"gateway-{replicas}.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
            env={**os.environ, "PREWARM_GATEWAY_MAX_IN_FLIGHT_PER_REPLICA": "1",
                 "PREWARM_GATEWAY_QUEUE_CAPACITY": "10000"},
        )  # fmt: skip
        stack.callback(stop_process, gateway)
        wait_ok(f"http://127.0.0.1:{port}/v2/health/ready")
        path = f"/v2/models/{DEFAULT_MODEL}/infer"
        url = f"http://127.0.0.1:{port}{path}"
        run_open_loop(url, digits_body(), [RateStep(2, 20.0 * replicas)], connections=128)  # warm-up
        probe = [RateStep(5, 10.0)]
        direct_ms = run_open_loop(f"{started[0].url}{path}", digits_body(), probe).summary().p50_ms
        gateway_ms = run_open_loop(url, digits_body(), probe).summary().p50_ms
        levels = []
        for load in loads:
            total = load * replicas
            shaped = [RateStep(step_s, float(rate)) for rate in window * (total / window.mean())]
            levels.append(measure(url, shaped, replicas, "demo shape"))
            time.sleep(0.5)
            if smooth:
                levels.append(measure(url, [RateStep(seconds, total)], replicas, "smooth"))
                time.sleep(0.5)
        return levels, direct_ms, gateway_ms


def busiest_start(rates: npt.NDArray[np.float64], width: int) -> int:
    """The first step of the busiest ``width`` steps of the day."""
    return int(np.argmax(np.convolve(rates, np.ones(width), "valid")))


def true_capacity(
    replicas: int, loads: list[float], seconds: int, live_day: int | None = None
) -> tuple[float | None, list[Level]]:
    """The knee of ``replicas`` demo replicas under the demo's shape (the busiest window of the day), measured."""
    rates, step_s = demo_steps(live_day)
    width = round(seconds / step_s)
    start = busiest_start(rates, width)
    with tempfile.TemporaryDirectory(prefix="capacity-truth-") as scratch:
        levels, _, _ = run_replicas(
            replicas, loads, seconds, rates[start : start + width], step_s, Path(scratch), smooth=False
        )
    return knee_rps(levels), levels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,4", help="replica counts, comma-separated")
    parser.add_argument("--levels", default="28,32,36,40,44,48", help="mean loads per replica (rps)")
    parser.add_argument("--seconds", type=int, default=20, help="seconds per level and traffic")
    parser.add_argument("--window-start", type=float, default=None,
                        help="start of the demo-day window (replay s; default: the busiest window)")  # fmt: skip
    args = parser.parse_args()
    counts = [int(c) for c in args.replicas.split(",") if c.strip()]
    loads = sorted(float(v) for v in args.levels.split(",") if v.strip())
    rates, step_s = demo_steps()
    width = round(args.seconds / step_s)
    start = busiest_start(rates, width) if args.window_start is None else round(args.window_start / step_s)
    window = rates[start : start + width]
    if len(window) < width or window.mean() <= 0:
        parser.error(f"the window at {start * step_s:g} s does not fit the day's {len(rates) * step_s:g} s")
    per_second = round(1 / step_s)
    results: dict[int, tuple[list[Level], float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="capacity-truth-") as scratch:
        for count in counts:
            results[count] = run_replicas(count, loads, args.seconds, window, step_s, Path(scratch))
    print(f"Demo shape: NASA day 10 at 360x, steps of {step_s * 1000:.0f} ms, window {start * step_s:.0f}-"
          f"{(start + width) * step_s:.0f} s of the {len(rates) * step_s:.0f} s day (busiest: {args.window_start is None}); "
          f"within-second CV of the steps {within_second_cv(window, per_second):.2f} (whole day "
          f"{within_second_cv(rates, per_second):.2f}). {args.seconds} s per level; a second is bad when the p95 of "
          f"the requests intended in it is over {SLO_P95_MS:g} ms.\n")  # fmt: skip
    print("| replicas | traffic | load per replica rps | share of seconds over the SLO | p50 ms | p95 ms | errors | "
          "generator slip p99 ms |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for count, (levels, _, _) in results.items():
        for traffic in ("demo shape", "smooth"):
            for level in (lv for lv in levels if lv.traffic == traffic):
                print(f"| {count} | {traffic} | {level.load_rps:.1f} | {level.bad_share:.0%} | {level.p50_ms:.1f} "
                      f"| {level.p95_ms:.1f} | {level.errors} | {level.slip_p99_ms:.1f} |")  # fmt: skip
    print("\nTrue capacity (share of bad seconds crosses 50 %):")
    for count, (levels, _, _) in results.items():
        for traffic in ("demo shape", "smooth"):
            print(f"- {count} replica{'s' if count > 1 else ''}, {traffic}: "
                  f"{crossing([lv for lv in levels if lv.traffic == traffic])}")  # fmt: skip
    print()
    for count, (levels, direct_ms, gateway_ms) in results.items():
        lowest = min((lv for lv in levels if lv.traffic == "smooth"), key=lambda lv: lv.load_rps)
        print(f"- {count} replica{'s' if count > 1 else ''}: service time (median at {lowest.load_rps:.1f} rps, "
              f"smooth) {lowest.p50_ms:.1f} ms, ceiling {1000 / lowest.p50_ms:.1f} rps per replica; at 10 rps "
              f"median {direct_ms:.1f} ms direct to a replica, {gateway_ms:.1f} ms through the gateway")  # fmt: skip
        busiest = max(levels, key=lambda lv: lv.busy_gaps)
        if count == 1 and busiest.busy_gaps:  # with more replicas consecutive completions interleave
            print(f"  back to back (queued requests, {busiest.traffic} at {busiest.load_rps:.1f} rps): "
                  f"{busiest.busy_gap_ms:.1f} ms per request over {busiest.busy_gaps} requests, ceiling "
                  f"{1000 / busiest.busy_gap_ms:.1f} rps")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
