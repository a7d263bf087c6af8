"""Replica benchmark: peak throughput (wrk, closed loop) and latency at fixed offered rates (open loop).

    .venv/bin/python -m benchmarks.replica_bench [--wrk-seconds 5] [--open-seconds 5] [--rates 1000,5000]

Every server runs alone on 127.0.0.1, one after the other, in this one run: the generators' own ceiling against a
trivial endpoint, the naive FastAPI baseline, KServe's ModelServer (``benchmarks/replica_kserve.py``, run by the
interpreter in ``PREWARM_KSERVE_PYTHON``, else ``.venv-kserve/bin/python`` as ``make bench-replica`` builds it, else
this one when it has ``kserve``; skipped when none has), and
prewarm's replica (1 and 2 worker processes) on the digits MLP; then, when ``rapidocr-onnxruntime`` is installed, the
compute-bound text-direction classifier shipped inside it (taken at run time, never committed), sent with the
binary tensor extension. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from inference.loadgen import LoadSummary, RateStep, run_open_loop
from inference.protocol import encode_binary_request
from inference.testing import DEFAULT_MODEL_REPO, REPO_ROOT, digits_body, free_port

PY = sys.executable
WRK_LUA = """
wrk.method = "POST"
local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
{extra_headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f %.1f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


@dataclass
class Target:
    """One server to measure: how to start it, where to send, what to send."""

    label: str
    command: list[str]
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    model: str = "digits"
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float = math.nan  # server processes' CPU time / requests served (robust to noise)


@dataclass
class Row:
    target: Target
    ready_s: float
    wrk: WrkResult | None
    open_loop: dict[float, LoadSummary]


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise TimeoutError(url)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its children."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def run_wrk(url: str, body: bytes, headers: dict[str, str], seconds: float, scratch: Path) -> WrkResult:
    body_path = scratch / "body.bin"
    body_path.write_bytes(body)
    extra = "\n".join(f'wrk.headers["{key}"] = "{value}"' for key, value in headers.items())
    script = scratch / "post.lua"
    script.write_text(WRK_LUA.format(body=body_path, extra_headers=extra))
    output = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds:.0f}s", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"unexpected wrk output: {output}")
    requests, duration_us, socket_errors, status_errors = (int(match.group(i)) for i in range(1, 5))
    p50, p95, p99 = (float(match.group(i)) / 1000.0 for i in range(5, 8))
    return WrkResult(requests / (duration_us / 1e6), p50, p95, p99, socket_errors + status_errors)


def measure(
    target: Target, wrk_seconds: float, open_seconds: float, rates: Sequence[float], scratch: Path
) -> Row:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in target.command]
    log = open(scratch / f"{re.sub(r'[^a-z0-9]+', '-', target.label.lower())}.log", "wb")  # noqa: SIM115
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **target.env}
    )
    try:
        ready_url = (
            f"http://127.0.0.1:{port}/v2/health/ready"
            if target.model != "trivial"
            else f"http://127.0.0.1:{port}/"
        )
        wait_ready(ready_url, process)
        ready_s = time.monotonic() - started
        url = f"http://127.0.0.1:{port}{target.path}"
        check = httpx.post(url, content=target.body, headers=target.headers, timeout=10)
        if check.status_code != 200:
            raise RuntimeError(f"{target.label}: {check.status_code} {check.text[:200]}")
        cpu_before = tree_cpu_s(process.pid)
        wrk = run_wrk(url, target.body, target.headers, wrk_seconds, scratch)
        wrk.cpu_us_per_request = (
            (tree_cpu_s(process.pid) - cpu_before) / max(1.0, wrk.rps * wrk_seconds) * 1e6
        )
        summaries = {}
        for rate in rates:
            result = run_open_loop(
                url, target.body, [RateStep(open_seconds, rate)], connections=64, timeout_s=5.0,
                headers=target.headers,
            )  # fmt: skip
            summaries[rate] = result.summary()
        return Row(target, ready_s, wrk, summaries)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def replica_command(repo: Path, model: str, workers: int, *extra: str) -> list[str]:
    return [
        PY, "-m", "inference", "replica", "--model-repo", str(repo), "--model", model, "--port", "{port}",
        "--workers", str(workers), *extra,
    ]  # fmt: skip


# Every digits request says it is JSON (KServe reads a body without this header as binary tensors).
JSON_HEADERS = {"content-type": "application/json"}


def kserve_python() -> str | None:
    """An interpreter with ``kserve`` installed, or None: KServe pins its own FastAPI/uvicorn, so it lives apart."""
    candidates = [os.environ.get("PREWARM_KSERVE_PYTHON", ""), str(REPO_ROOT / ".venv-kserve" / "bin" / "python")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    return PY if importlib.util.find_spec("kserve") is not None else None


def kserve_target(body: bytes) -> Target | None:
    python = kserve_python()
    if python is None:
        return None
    return Target(
        "KServe ModelServer (1 worker)",
        [python, "-m", "benchmarks.replica_kserve", "--port", "{port}", "--model-path", str(DEFAULT_MODEL_REPO / "digits_mlp" / "model.onnx")],
        "/v2/models/digits_mlp/infer",
        body,
        JSON_HEADERS,
        env={"PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip


def ocr_repo(scratch: Path) -> Path | None:
    """A model repository holding rapidocr's text-direction classifier, linked from the installed package."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or spec.origin is None:
        return None
    source = Path(spec.origin).parent / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    if not source.is_file():
        return None
    folder = scratch / "models" / "ocr_cls"
    folder.mkdir(parents=True)
    os.symlink(source, folder / "model.onnx")
    (folder / "config.json").write_text('{"inputs": {"x": {"shape": [-1, 3, 48, 192]}}}')
    return folder.parent


def targets(scratch: Path) -> list[Target]:
    body = digits_body()
    digits_path = "/v2/models/digits_mlp/infer"
    naive = [PY, "-m", "benchmarks.replica_baselines", "naive", "--port", "{port}", "--model-path",
             str(DEFAULT_MODEL_REPO / "digits_mlp" / "model.onnx")]  # fmt: skip
    chosen = [
        Target("trivial raw-ASGI endpoint (generator ceiling)", [PY, "-m", "benchmarks.replica_baselines", "trivial", "--port", "{port}"], "/", body, model="trivial"),
        Target("naive FastAPI (1 worker)", naive, digits_path, body, JSON_HEADERS),
        Target("prewarm replica (1 worker)", replica_command(DEFAULT_MODEL_REPO, "digits_mlp", 1), digits_path, body, JSON_HEADERS),
        Target("prewarm replica on uvicorn (1 worker)", replica_command(DEFAULT_MODEL_REPO, "digits_mlp", 1, "--server", "uvicorn"), digits_path, body, JSON_HEADERS),
        Target("naive FastAPI (2 workers)", [*naive, "--workers", "2"], digits_path, body, JSON_HEADERS, workers=2),
        Target("prewarm replica (2 workers)", replica_command(DEFAULT_MODEL_REPO, "digits_mlp", 2), digits_path, body, JSON_HEADERS, workers=2),
    ]  # fmt: skip
    kserve = kserve_target(body)
    if kserve is not None:
        chosen.insert(2, kserve)
    repo = ocr_repo(scratch)
    if repo is not None:
        image = np.random.default_rng(0).random((1, 3, 48, 192), dtype=np.float32)
        raw, header_length = encode_binary_request({"x": image}, {"x": "FP32"})
        headers = {"Inference-Header-Content-Length": str(header_length)}
        path = "/v2/models/ocr_cls/infer"
        for workers, extra in ((1, ()), (2, ()), (1, ("--batch-max-size", "8"))):
            label = f"OCR cls, compute-bound ({workers} worker{'s' if workers > 1 else ''}{', batching' if extra else ''})"
            chosen.append(
                Target(label, replica_command(repo, "ocr_cls", workers, *extra), path, raw, headers, "ocr_cls", workers)
            )  # fmt: skip
    return chosen


def fmt(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.1f}"


def table(rows: list[Row], rates: Sequence[float]) -> str:
    ceiling = next((row.wrk.rps for row in rows if row.target.model == "trivial" and row.wrk), math.inf)
    naive_cpu = {
        row.target.workers: row.wrk.cpu_us_per_request
        for row in rows
        if row.target.label.startswith("naive") and row.wrk
    }
    naive = {
        row.target.workers: row.wrk.rps for row in rows if row.target.label.startswith("naive") and row.wrk
    }
    head = ["server", "ready s", "wrk req/s", "x naive", "wrk p95 ms", "CPU us/req", "x naive CPU"]
    for rate in rates:
        head += [f"{rate:.0f}/s p50", f"{rate:.0f}/s p95", f"{rate:.0f}/s p99", f"{rate:.0f}/s err"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        wrk = row.wrk
        ratio = (
            ""
            if wrk is None or row.target.model != "digits"
            else f"{wrk.rps / naive.get(row.target.workers, math.nan):.2f}"
        )
        cpu_ratio = (
            ""
            if wrk is None or row.target.model != "digits"
            else f"{naive_cpu.get(row.target.workers, math.nan) / wrk.cpu_us_per_request:.2f}"
        )
        limited = (
            " (generator-bound)" if wrk and row.target.model != "trivial" and wrk.rps > 0.85 * ceiling else ""
        )
        cells = [row.target.label, f"{row.ready_s:.2f}", f"{wrk.rps:,.0f}{limited}" if wrk else "-", ratio,
                 fmt(wrk.p95_ms) if wrk else "-", fmt(wrk.cpu_us_per_request) if wrk else "-", cpu_ratio]  # fmt: skip
        for rate in rates:
            summary = row.open_loop.get(rate)
            if summary is None:
                cells += ["-"] * 4
            else:
                cells += [fmt(summary.p50_ms), fmt(summary.p95_ms), fmt(summary.p99_ms), str(summary.errors)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wrk-seconds", type=float, default=5.0)
    parser.add_argument("--open-seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="1000,5000")
    parser.add_argument("--only", default="", help="measure only targets whose label contains this text")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    rates = [float(rate) for rate in args.rates.split(",") if rate]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="replica-bench-") as scratch_name:
        scratch = Path(scratch_name)
        chosen = [
            target for target in targets(scratch) if args.only in target.label or target.model == "trivial"
        ]
        for target in chosen:
            print(f"measuring {target.label} ...", file=sys.stderr, flush=True)
            rows.append(measure(target, args.wrk_seconds, args.open_seconds, rates, scratch))
    print(f"\nwrk -t1 -c16 -d{args.wrk_seconds:.0f}s (closed loop); open loop {args.open_seconds:.0f}s per rate, "
          "latency from the intended send time, ms; os.cpu_count()=" + str(os.cpu_count()))  # fmt: skip
    print(table(rows, rates))
    if kserve_python() is None:
        print("\nKServe baseline skipped: no interpreter with kserve (make bench-replica builds .venv-kserve).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
