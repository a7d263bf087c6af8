"""Process plumbing for the local backend: free ports, spawning, readiness probes, graceful termination."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

OWNER_ENV = (
    "PREWARM_REPLICA_OWNER"  # marks replica processes so that a restarted backend can find its orphans
)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spawn(command: Sequence[str], owner: str, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a replica in its own session (a Ctrl-C aimed at the backend does not hit it), output to a log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, OWNER_ENV: owner}
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            list(command), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip


def probe_ready(host: str, port: int, timeout_s: float) -> bool:
    """True if GET /v2/health/ready answers 200 within ``timeout_s``."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", "/v2/health/ready")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def send_signal(process: psutil.Process, signum: signal.Signals) -> None:
    """Signal a process, ignoring one that is already gone."""
    with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
        process.send_signal(signum)


def is_alive(process: psutil.Process, popen: subprocess.Popen[bytes] | None) -> tuple[bool, str]:
    """(alive, how it ended); reaps our own children so that they do not linger as zombies."""
    if popen is not None:
        code = popen.poll()
        return (True, "") if code is None else (False, f"exit code {code}")
    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            return False, "exited (zombie)"
        return process.is_running(), "exited"
    except psutil.NoSuchProcess:
        return False, "exited"


def same_process(pid: int, create_time: float | None) -> psutil.Process | None:
    """The process with this pid if it is the one we started (create time matches), else None."""
    try:
        process = psutil.Process(pid)
        if create_time is not None and abs(process.create_time() - create_time) > 0.05:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def find_owned_processes(owner: str) -> list[psutil.Process]:
    """Every live process started with ``PREWARM_REPLICA_OWNER=owner`` (orphans of a previous backend)."""
    found: list[psutil.Process] = []
    me = os.getpid()
    for process in psutil.process_iter(["pid"]):
        if process.pid == me:
            continue
        try:
            if process.environ().get(OWNER_ENV) == owner and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found
