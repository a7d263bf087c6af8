"""``prewarm controller`` as a real process for tests: start, wait until it answers, signal, read its API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

TOKEN = "process-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Controller:
    """One controller process; ``env`` adds to (or overrides) the environment it runs with."""

    def __init__(self, database_url: str, state_dir: Path, name: str = "controller", **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.env = {
            **os.environ,
            "PREWARM_DATABASE_URL": database_url,
            "PREWARM_ADMIN_TOKENS": f"ops:{TOKEN}",
            "PREWARM_FORECAST_POLL_INTERVAL_S": "1",
            **env,
        }
        self.state_dir = state_dir
        self.log_path = state_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "prewarm.cli", "controller", "--port", str(self.port)]
        command += ["--state-dir", str(self.state_dir), *extra]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self.process

    def start(self, *extra: str, timeout_s: float = 60.0) -> None:
        process = self.spawn(*extra)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert process.poll() is None, self.log()[-3000:]
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"controller {self.name} did not answer within {timeout_s} s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self, sig: signal.Signals) -> int:
        self.signal(sig)
        assert self.process is not None
        return self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=30)

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json() if "json" in response.headers.get("content-type", "") else response.text

    def post(self, path: str, body: Any) -> Any:
        response = httpx.post(f"{self.url}{path}", json=body, headers=ADMIN, timeout=60)
        assert response.status_code in (200, 201), response.text
        return response.json()


def wait_for(condition: Callable[[], T | None], timeout_s: float = 30.0, every_s: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; fail with a clear message after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s} s")
