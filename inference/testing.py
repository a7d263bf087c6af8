"""Helpers for tests and benchmarks: the default model's paths, V2 bodies, and a real replica process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_REPO = REPO_ROOT / "models" / "onnx"
DEFAULT_MODEL = "digits_mlp"


def digits_body(rows: int = 1, value: float = 0.25, offset: int = 0) -> bytes:
    """A V2 infer body for the digits MLP: ``rows`` x 64 FP32 values (varied, deterministic)."""
    data = [round((value + ((offset + i) % 17) / 17.0) % 1.0, 6) for i in range(rows * 64)]
    return orjson.dumps(
        {"inputs": [{"name": "input", "shape": [rows, 64], "datatype": "FP32", "data": data}]}
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ReplicaProcess:
    """A ``python -m inference replica`` child process on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Poll ``/v2/health/ready`` until 200; return seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"replica not ready after {timeout_s} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@contextmanager
def replica_process(
    log_dir: Path,
    model_repo: Path = DEFAULT_MODEL_REPO,
    model: str = DEFAULT_MODEL,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[ReplicaProcess]:
    """Start a replica process (not waiting for readiness); SIGTERM it (then kill) on exit."""
    port = port or free_port()
    log_path = log_dir / f"replica-{port}.log"
    command = [
        sys.executable, "-m", "inference", "replica",
        "--model-repo", str(model_repo), "--model", model, "--port", str(port), *extra_args,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env={**os.environ, **(env or {})}
        )
    replica = ReplicaProcess(process, port, log_path)
    try:
        yield replica
    finally:
        replica.terminate()


def wait_ok(url: str, timeout_s: float = 20) -> None:
    """Wait until ``url`` answers 200 (TimeoutError after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
