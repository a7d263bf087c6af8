"""gRPC against HTTP on one replica: the same model, the same input, one run, side by side.

    .venv/bin/python -m benchmarks.grpc_bench [--seconds 5] [--rounds 3] [--concurrency 16]

For each shipped model (the digits MLP; rapidocr's compute-bound text-direction classifier when
``rapidocr-onnxruntime`` is installed, as in ``benchmarks.replica_bench``) one replica (1 worker) serves both
protocols; each round measures HTTP (wrk, keep-alive, ``--concurrency`` connections; JSON for digits, the binary
tensor extension for the classifier) then gRPC (a grpc.aio client process keeping ``--concurrency`` ModelInfer calls
in flight on one channel, raw_input_contents, the request serialised once). The figure that does not depend on the
load generators is the replica's CPU time per request (its process tree, psutil); req/s also depends on them, and the
Python gRPC client is slower than wrk. Medians over rounds; ratios are gRPC / HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks.replica_bench import JSON_HEADERS, ocr_repo, replica_command, run_wrk, tree_cpu_s, wait_ready
from inference.protocol import encode_binary_request
from inference.testing import DEFAULT_MODEL_REPO, REPO_ROOT, digits_body, free_port

PY = sys.executable


@dataclass(frozen=True)
class Model:
    label: str
    repo: Path
    name: str
    input_name: str
    array: np.ndarray
    http_body: bytes
    http_headers: dict[str, str]


@dataclass
class Measure:
    rps: float
    p95_ms: float
    cpu_us: float
    errors: int


def models(scratch: Path) -> list[Model]:
    digits = np.asarray(_digits_values(), dtype=np.float32).reshape(1, 64)  # the values the HTTP body carries
    chosen = [
        Model("digits MLP", DEFAULT_MODEL_REPO, "digits_mlp", "input", digits, digits_body(), JSON_HEADERS)
    ]
    repo = ocr_repo(scratch)
    if repo is not None:
        image = np.random.default_rng(0).random((1, 3, 48, 192), dtype=np.float32)
        raw, header_length = encode_binary_request({"x": image}, {"x": "FP32"})
        headers = {"Inference-Header-Content-Length": str(header_length)}
        chosen.append(Model("OCR cls, compute-bound", repo, "ocr_cls", "x", image, raw, headers))
    return chosen


def _digits_values() -> list[float]:
    import orjson

    return list(orjson.loads(digits_body())["inputs"][0]["data"])


# --- the gRPC load generator (runs in its own process: it must not share the benchmark's GIL) ------------------
async def _grpc_load(
    target: str, request: bytes, concurrency: int, seconds: float
) -> tuple[int, int, list[float]]:
    import grpc

    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    await call(request, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), errors, latencies


def load_main(argv: Sequence[str]) -> int:
    target, request_path, concurrency, seconds = argv
    request = Path(request_path).read_bytes()
    started = time.perf_counter()
    count, errors, latencies = asyncio.run(_grpc_load(target, request, int(concurrency), float(seconds)))
    elapsed = time.perf_counter() - started
    p95 = float(np.percentile(latencies, 95)) * 1000 if latencies else float("nan")
    print(f"RESULT {count} {errors} {elapsed:.3f} {p95:.3f}")
    return 0


def grpc_request(model: Model) -> bytes:
    from inference.v2grpc import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=model.name)
    request.inputs.add(name=model.input_name, datatype="FP32", shape=model.array.shape)
    request.raw_input_contents.append(model.array.astype("<f4").tobytes())
    return request.SerializeToString()


def run_grpc(target: str, request: bytes, concurrency: int, seconds: float, scratch: Path) -> Measure:
    path = scratch / "request.bin"
    path.write_bytes(request)
    output = subprocess.run(
        [PY, "-m", "benchmarks.grpc_bench", "--load", target, str(path), str(concurrency), str(seconds)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    count, errors, elapsed, p95 = line.split()[1:]
    return Measure(int(count) / float(elapsed), float(p95), 0.0, int(errors))


def measure_model(
    model: Model, seconds: float, rounds: int, concurrency: int, scratch: Path
) -> dict[str, list[Measure]]:
    port, grpc_port = free_port(), free_port()
    command = [part.replace("{port}", str(port)) for part in replica_command(model.repo, model.name, 1)]
    log = open(scratch / f"{model.name}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [*command, "--grpc-port", str(grpc_port)], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    results: dict[str, list[Measure]] = {"HTTP": [], "gRPC": []}
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", process)
        url = f"http://127.0.0.1:{port}/v2/models/{model.name}/infer"
        check = httpx.post(url, content=model.http_body, headers=model.http_headers, timeout=10)
        if check.status_code != 200:
            raise RuntimeError(f"{model.label}: {check.status_code} {check.text[:200]}")
        request = grpc_request(model)
        for _ in range(rounds):
            cpu = tree_cpu_s(process.pid)
            wrk = run_wrk(url, model.http_body, model.http_headers, seconds, scratch)
            served = max(1.0, wrk.rps * seconds)
            results["HTTP"].append(
                Measure(wrk.rps, wrk.p95_ms, (tree_cpu_s(process.pid) - cpu) / served * 1e6, wrk.errors)
            )
            cpu = tree_cpu_s(process.pid)
            grpc_measure = run_grpc(f"127.0.0.1:{grpc_port}", request, concurrency, seconds, scratch)
            grpc_measure.cpu_us = (tree_cpu_s(process.pid) - cpu) / max(1.0, grpc_measure.rps * seconds) * 1e6
            results["gRPC"].append(grpc_measure)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    return results


def table(measured: list[tuple[Model, dict[str, list[Measure]]]]) -> str:
    lines = [
        "| model | protocol | req/s | p95 ms | replica CPU us/req | errors | req/s vs HTTP | CPU/req vs HTTP |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, results in measured:
        med = {
            protocol: (statistics.median(m.rps for m in ms), statistics.median(m.p95_ms for m in ms),
                       statistics.median(m.cpu_us for m in ms), sum(m.errors for m in ms))
            for protocol, ms in results.items()
        }  # fmt: skip
        for protocol, (rps, p95, cpu, errors) in med.items():
            ratio_rps = f"{rps / med['HTTP'][0]:.2f}x"
            ratio_cpu = f"{cpu / med['HTTP'][2]:.2f}x"
            lines.append(
                f"| {model.label} | {protocol} | {rps:,.0f} | {p95:.1f} | {cpu:.0f} | {errors} | {ratio_rps} | {ratio_cpu} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--load"]:
        return load_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    measured = []
    with tempfile.TemporaryDirectory(prefix="grpc-bench-") as scratch_name:
        scratch = Path(scratch_name)
        for model in models(scratch):
            print(f"measuring {model.label} ...", file=sys.stderr, flush=True)
            measured.append(
                (model, measure_model(model, args.seconds, args.rounds, args.concurrency, scratch))
            )
    print(
        f"One replica (1 worker) per model; each round HTTP (wrk -t1 -c{args.concurrency}) then gRPC (grpc.aio, "
        f"{args.concurrency} calls in flight on one channel), {args.seconds:.0f} s each, medians of {args.rounds} rounds"
    )
    print(table(measured))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
