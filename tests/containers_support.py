"""What the container tests share: the Docker engine in Swarm mode, the images, waiting for states, and cleaning up.

The container tests (``pytest -m containers``) run against the real engine that ``scripts/ensure-docker.sh``
starts. Where no engine answers they are skipped with the reason, except where Docker is expected (CI, or
``PREWARM_REQUIRE_DOCKER=1``): there they fail, saying why. Every name they create starts with ``prewarm-test-``,
so ``scripts/ensure-docker.sh --clean`` can remove whatever an interrupted run left.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from docker import DockerClient

ROOT = Path(__file__).resolve().parent.parent
TEST_PREFIX = "prewarm-test-"
T = TypeVar("T")


def unique_name(kind: str) -> str:
    """A name no other run uses, recognisable as the tests' own."""
    return f"{TEST_PREFIX}{kind}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def docker_expected() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("PREWARM_REQUIRE_DOCKER") == "1"


def engine_problem() -> str | None:
    """Why the container tests cannot run here, or None when an engine in Swarm mode answers."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return "the Docker SDK for Python (docker) is not installed"
    try:
        client = docker.from_env(timeout=10)
        try:
            swarm = client.info().get("Swarm", {})
        finally:
            client.close()
    except DockerException as error:
        return f"no Docker engine answers ({str(error).splitlines()[0][:200]})"
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        return "the Docker engine is not a Swarm manager (docker swarm init --advertise-addr 127.0.0.1)"
    return None


def require_swarm() -> None:
    """Skip (or, where Docker is expected, fail) unless a Swarm manager answers."""
    problem = engine_problem()
    if problem is None:
        return
    message = f"{problem}; run scripts/ensure-docker.sh (as root) to install and start it"
    if docker_expected():
        pytest.fail(f"the container tests are expected to run here (CI or PREWARM_REQUIRE_DOCKER=1) but {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[DockerClient]:
    """A client of the local engine, once the engine is known to be a Swarm manager."""
    require_swarm()
    import docker

    client = docker.from_env(timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="session")
def stack_images(docker_client: DockerClient) -> dict[str, str]:
    """The images compose.yaml needs, built here by scripts/build-images.sh (seconds when nothing changed)."""
    started = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), "--content-tag"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"scripts/build-images.sh failed ({result.returncode}):\n{result.stderr[-4000:]}")
    images = dict(line.split("=", 1) for line in result.stdout.split())
    print(f"images ready in {time.monotonic() - started:.1f} s: {images}")
    return images


def wait_for(
    what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 0.5
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` and the last value after the timeout."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval_s)


def docker_cli(*args: str, timeout_s: float = 120, env: dict[str, str] | None = None) -> str:
    """Run the docker command line (for what the SDK lacks, e.g. ``stack deploy``); its stdout."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def leftovers(docker_client: DockerClient, prefix: str) -> dict[str, list[str]]:
    """Everything of the engine whose name starts with ``prefix``: empty when a test cleaned up after itself."""
    found = {
        "services": [s.name for s in docker_client.services.list()],
        "containers": [c.name for c in docker_client.containers.list(all=True, ignore_removed=True)],
        "networks": [n.name for n in docker_client.networks.list()],
        "volumes": [v.name for v in docker_client.volumes.list()],
        "configs": [c.name for c in docker_client.configs.list()],
        "secrets": [s.name for s in docker_client.secrets.list()],
    }
    return {kind: [n for n in names if n and n.startswith(prefix)] for kind, names in found.items() if any(
        n and n.startswith(prefix) for n in names)}  # fmt: skip
