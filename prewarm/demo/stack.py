"""The processes of a local prewarm stack (controller with its replicas, gateway) and the HTTP calls that drive it.

Each child runs in its own session so a terminal's Ctrl-C reaches only the demo, which then stops them in order:
gateway, then controller (which drains and stops its replicas). ``stop()`` ends with a sweep for any process that
still carries the stack's marker in its environment (children inherit it), so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

logger = logging.getLogger(__name__)

API = "/api/v1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StackError(RuntimeError):
    """A process of the stack did not start or an API call failed; the message says which and why."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class LocalStack:
    """Controller (API, loop, forecasts, local replicas) and gateway on 127.0.0.1, sharing one database."""

    workdir: Path
    database_url: str
    admin_token: str
    api_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def replica_state_dir(self) -> Path:
        return self.workdir / "replicas"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PREWARM_DATABASE_URL": self.database_url,
            "PREWARM_ADMIN_TOKENS": f"demo:{self.admin_token}",
            "PREWARM_REPLICA_STATE_DIR": str(self.replica_state_dir.resolve()),
            "PREWARM_STACK_DIR": str(self.workdir.resolve()),  # marks every process of this stack
            **self.extra_env,
        }

    # -- processes ------------------------------------------------------------------------------------------

    def start_controller(self, tick_s: float = 0.25) -> None:
        self._spawn("controller", ["controller", "--port", str(self.api_port), "--tick-s", str(tick_s)])
        self._wait_http(f"{self.api_url}{API}/health", "controller")

    def start_gateway(self, deployment: str, proxy: str = "python") -> None:
        command = ["gateway", "--deployment", deployment, "--port", str(self.gateway_port), "--proxy", proxy]
        self._spawn("gateway", command)
        self._wait_port(self.gateway_port, "gateway")

    def _spawn(self, name: str, arguments: list[str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prewarm.cli", *arguments],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.children.append(Child(name, process, log_path))

    def _wait_http(self, url: str, name: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive(name)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise StackError(f"{name} did not answer {url} within {timeout_s:.0f} s; see {self._log(name)}")

    def _wait_port(self, port: int, name: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive(name)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
            time.sleep(0.2)
        raise StackError(
            f"{name} did not listen on port {port} within {timeout_s:.0f} s; see {self._log(name)}"
        )

    def _check_alive(self, name: str) -> None:
        for child in self.children:
            if child.name == name and child.process.poll() is not None:
                tail = child.log_path.read_text(errors="replace")[-2000:]
                raise StackError(f"{name} exited with {child.process.returncode}:\n{tail}")

    def _log(self, name: str) -> Path | None:
        return next((child.log_path for child in self.children if child.name == name), None)

    def stop(self, timeout_s: float = 60.0) -> list[int]:
        """Stop the gateway, then the controller (it stops its replicas); returns pids that had to be killed."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    logger.warning("%s did not stop within %.0f s: killing it", child.name, timeout_s)
                    child.process.kill()
                    child.process.wait()
        self.children.clear()
        return self.kill_leftovers()

    def kill_leftovers(self) -> list[int]:
        """Kill any process still marked as part of this stack (there should be none) and say which."""
        marker = str(self.workdir.resolve())
        killed = []
        for process in psutil.process_iter(["pid", "name", "environ"]):
            if process.pid == os.getpid():
                continue
            try:
                environ = process.info.get("environ") or {}
            except (psutil.Error, TypeError):
                continue
            if environ.get("PREWARM_STACK_DIR") == marker:
                with contextlib.suppress(psutil.Error):
                    logger.warning("killing leftover process %d (%s)", process.pid, process.info.get("name"))
                    process.kill()
                    killed.append(process.pid)
        return killed

    # -- the control API ------------------------------------------------------------------------------------

    def call(
        self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201, 204)
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        response = httpx.request(
            method, f"{self.api_url}{API}{path}", json=body, headers=headers, timeout=120
        )
        if response.status_code not in expect:
            raise StackError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None
