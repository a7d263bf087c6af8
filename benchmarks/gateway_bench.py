"""Two real replicas reached (a) through prewarm's gateway carrying requests itself (``--proxy python``),
(a') through prewarm's gateway driving nginx (``--proxy nginx``), (b) through a plain nginx (least_conn, keep-alive
upstreams, configured here), (c) directly with the generator splitting load itself; one run, side by side.

Run: .venv/bin/python -m benchmarks.gateway_bench [--duration 10] [--connections 16]
Generator: wrk, closed loop (``-t1 -cN``), POST of one digits row; p95 from wrk's latency histogram.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import uvloop

from inference.loadgen import LoadResult, LoadSummary, RateStep, open_loop
from inference.testing import DEFAULT_MODEL, digits_body, free_port, replica_process, wait_ok

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""

NGINX_CONF = """
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream replicas {{
    least_conn;
    {servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_502;
    }}
  }}
}}
"""


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


def measure(name: str, urls: list[str], script: Path, connections: int, duration_s: int) -> Result:
    """Run one wrk per url at once (connections split between them); sum rates, worst percentiles."""
    per = max(connections // len(urls), 1)
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i, url in enumerate(urls):
            out = Path(tmp) / f"{i}.out"
            procs.append((subprocess.Popen(
                ["wrk", "-t1", f"-c{per}", f"-d{duration_s}s", "-s", str(script), url],
                stdout=open(out, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
            ), out))  # fmt: skip
        rows = []
        for proc, out in procs:
            proc.wait()
            match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out.read_text())
            assert match, out.read_text()
            rows.append([float(g) for g in match.groups()])
    rps = sum(r[0] / (r[2] / 1e6) for r in rows)
    return Result(name, rps, int(sum(r[1] for r in rows)), max(r[3] for r in rows), max(r[4] for r in rows),
                  max(r[5] for r in rows))  # fmt: skip


def open_loop_split(urls: list[str], body: bytes, rate_rps: float, duration_s: float) -> LoadSummary:
    """The replica benchmark's open-loop generator at ``rate_rps`` in total, split evenly over ``urls``."""

    async def run() -> list[LoadResult]:
        step = [RateStep(duration_s, rate_rps / len(urls))]
        return list(await asyncio.gather(*(open_loop(url, body, step, connections=64) for url in urls)))

    results = uvloop.run(run())
    merged = LoadResult(
        np.concatenate([r.intended_s for r in results]), np.concatenate([r.latency_s for r in results]),
        np.concatenate([r.status for r in results]), duration_s,
    )  # fmt: skip
    return merged.summary()


def highest_rate(
    urls: list[str], body: bytes, start_rps: float, trial_s: float, trials: int
) -> LoadSummary | None:
    """Search the highest offered rate with p95 < 50 ms and <= 0.1 % errors (multiplicative, then bisection)."""
    best: LoadSummary | None = None
    low, high, rate = 0.0, math.inf, start_rps
    for _ in range(trials):
        summary = open_loop_split(urls, body, rate, trial_s)
        if summary.p95_ms < 50 and summary.errors <= 0.001 * summary.sent:
            low, best = rate, summary
        else:
            high = rate
        if high / max(low, 1.0) < 1.08:
            break
        rate = rate * 1.4 if math.isinf(high) else (low + high) / 2 if low else rate / 2
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--trial", type=float, default=3.0, help="seconds per open-loop trial rate")
    parser.add_argument("--trials", type=int, default=6, help="open-loop trials per path (rate search)")
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="repeat all measurements; medians are reported")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("nginx"):
        print("needs wrk and nginx (apt-get install -y wrk nginx-light)", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gateway-bench-")))
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT.format(body=digits_body().decode()))
        replicas = [stack.enter_context(replica_process(tmp)) for _ in range(2)]
        for replica in replicas:
            replica.wait_ready()
        gateway_port, nginx_port = free_port(), free_port()
        driven_port = free_port()
        upstream_args = [arg for r in replicas for arg in ("--upstream", f"127.0.0.1:{r.port}")]
        for proxy, port in (("python", gateway_port), ("nginx", driven_port)):
            gateway = subprocess.Popen(
                [sys.executable, "-m", "inference.gateway", "--proxy", proxy, "--port", str(port), "--no-store",
                 *upstream_args],
                stdout=open(tmp / f"gateway-{proxy}.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
            )  # fmt: skip
            stack.callback(lambda g=gateway: (g.terminate(), g.wait(10)))
        servers = " ".join(f"server 127.0.0.1:{r.port};" for r in replicas)
        (tmp / "nginx.conf").write_text(
            NGINX_CONF.format(workers=args.nginx_workers, dir=tmp, servers=servers, port=nginx_port)
        )
        nginx = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
        stack.callback(lambda: (nginx.terminate(), nginx.wait(10)))
        path = f"/v2/models/{DEFAULT_MODEL}/infer"
        wait_ok(f"http://127.0.0.1:{gateway_port}/v2/health/ready")
        wait_ok(f"http://127.0.0.1:{nginx_port}/v2/health/ready")
        wait_ok(f"http://127.0.0.1:{driven_port}/v2/health/ready")
        targets = {
            "gateway (python)": [f"http://127.0.0.1:{gateway_port}{path}"],
            "gateway (nginx)": [f"http://127.0.0.1:{driven_port}{path}"],
            "nginx": [f"http://127.0.0.1:{nginx_port}{path}"],
            "direct": [f"http://127.0.0.1:{r.port}{path}" for r in replicas],
        }
        for urls in targets.values():  # warm every path (connections, caches)
            measure("warm", urls, script, args.connections, 2)
        rounds: list[dict[str, Result]] = []
        for index in range(args.rounds):
            # Rotate the order each round so that no path always runs first or last on a shared machine.
            names = list(targets)
            names = names[index % len(names) :] + names[: index % len(names)]
            rounds.append(
                {
                    name: measure(name, targets[name], script, args.connections, args.duration)
                    for name in names
                }
            )
        body = digits_body()
        sweep = {}
        for name, urls in targets.items():
            start = 0.7 * statistics.median(r[name].rps for r in rounds)
            sweep[name] = highest_rate(urls, body, start, args.trial, args.trials)
    print(f"\nOpen loop (inference.loadgen, latency from intended send time): highest rate with p95 < 50 ms and "
          f"<= 0.1 % errors, {args.trials} trials of {args.trial:g} s per path")  # fmt: skip
    print("| path | highest rate req/s | p50 ms | p95 ms | p99 ms | errors | vs nginx |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    nginx_best = sweep["nginx"]
    for name, found in sweep.items():
        if found is None:
            print(f"| {name} | none passed | - | - | - | - | - |")
            continue
        ratio = f"{found.offered_rps / nginx_best.offered_rps:.0%}" if nginx_best else "-"
        print(f"| {name} | {found.offered_rps:,.0f} | {found.p50_ms:.2f} | {found.p95_ms:.2f} | {found.p99_ms:.2f} "
              f"| {found.errors} | {ratio} |")  # fmt: skip
    print(f"\n2 replicas of {DEFAULT_MODEL}, wrk -t1 -c{args.connections} (closed loop), {args.duration} s x "
          f"{args.rounds} rounds, nginx worker_processes {args.nginx_workers}; medians over rounds, 'vs nginx' is the "
          f"median of per-round ratios (each round measures all paths back to back)")  # fmt: skip
    print("| path | req/s | p50 ms | p95 ms | p99 ms | errors | vs nginx (min-max) | p95 < 50 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in targets:
        results = [r[name] for r in rounds]
        ratios = sorted(r[name].rps / r["nginx"].rps for r in rounds)
        p95 = statistics.median(r.p95_ms for r in results)
        print(f"| {name} | {statistics.median(r.rps for r in results):,.0f} "
              f"| {statistics.median(r.p50_ms for r in results):.2f} | {p95:.2f} "
              f"| {statistics.median(r.p99_ms for r in results):.2f} | {sum(r.errors for r in results)} "
              f"| {statistics.median(ratios):.0%} ({ratios[0]:.0%}-{ratios[-1]:.0%}) | {'yes' if p95 < 50 else 'no'} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
