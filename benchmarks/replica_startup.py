"""Replica start to ready: a Swarm task of the prewarm image against a local replica process, side by side.

    .venv/bin/python -m benchmarks.replica_startup [--replicas 3] [--rounds 2]

Each round scales both backends from zero to ``--replicas`` (local processes first, then the Swarm service), and
each replica's startup is what its backend records as the ``ready`` event the lead time is computed from: spawn to
the first answered readiness probe for a local process (probed every 0.1 s), task creation to running and healthy
for a Swarm task (the health check of compose.yaml's replica service). The Swarm side is split into its two parts
from the task and container timestamps: task creation to container start (what the simulator's
``--scheduling-delay-s`` models) and container start to healthy (its ``--prewarm-s``). Also printed: the wall time
from ``scale_to`` to every replica counted ready, and what each startup does to the lead time. Needs the images of
scripts/build-images.sh and a Docker engine in Swarm mode (scripts/ensure-docker.sh).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.backends.local import LocalProcessBackend
from controller.backends.local_events import READY, Event
from controller.backends.swarm import SwarmBackend, SwarmTarget, parse_docker_time
from controller.policy import ScalingPolicy
from controller.simulation.cluster import DEFAULT_PREWARM_S, DEFAULT_SCHEDULING_DELAY_S

ROOT = Path(__file__).resolve().parent.parent
NS = 1_000_000_000


class Collected:
    """An event sink that keeps the events (the benchmark reads the startups from them)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, event: Event) -> None:
        self.events.append(event)

    def startups(self) -> list[float]:
        return [e.duration_s for e in self.events if e.event == READY and e.duration_s is not None]


@dataclass
class Figures:
    startups_s: list[float] = field(default_factory=list)
    all_ready_s: list[float] = field(default_factory=list)  # scale_to() to every replica counted ready
    to_container_start_s: list[float] = field(default_factory=list)  # Swarm only
    start_to_healthy_s: list[float] = field(default_factory=list)  # Swarm only


def _wait(what: str, ready: Callable[[], bool], timeout_s: float = 120.0, interval_s: float = 0.1) -> float:
    started = time.monotonic()
    while not ready():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{what}: not done after {timeout_s:.0f} s")
        time.sleep(interval_s)
    return time.monotonic() - started


def _duration_ns(text: str) -> int:
    """'2s' / '500ms' (compose durations) in nanoseconds."""
    for unit, factor in (("ms", 1_000_000), ("s", NS), ("m", 60 * NS)):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    raise ValueError(f"cannot read the duration {text!r}")


def _replica_service_spec() -> tuple[list[str], dict[str, Any]]:
    """The replica service's command and health check, as compose.yaml gives them."""
    replica = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["replica"]
    return list(replica["command"]), dict(replica["healthcheck"])


def _build_images() -> str:
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), "--content-tag"], cwd=ROOT, capture_output=True, text=True,
        check=True, timeout=1800,
    )  # fmt: skip
    images = dict(line.split("=", 1) for line in result.stdout.split())
    return f"prewarm:{images['PREWARM_IMAGE_TAG']}"


def _local_round(replicas: int, state_root: Path, figures: Figures) -> None:
    sink = Collected()
    backend = LocalProcessBackend.from_deployment("bench-startup", "digits_mlp", {}, state_root, events=sink)
    try:
        backend.scale_to(replicas)
        figures.all_ready_s.append(_wait("local replicas ready", lambda: backend.ready_count() == replicas))
        figures.startups_s += sink.startups()
    finally:
        backend.close()


def _swarm_round(client: Any, service: str, replicas: int, figures: Figures) -> None:
    sink = Collected()
    backend = SwarmBackend(SwarmTarget(service), events=sink)
    try:
        backend.replicas()  # the first look (nothing runs yet): every task after it is measured
        backend.scale_to(replicas)
        figures.all_ready_s.append(_wait("Swarm tasks ready", lambda: backend.ready_count() == replicas))
        figures.startups_s += sink.startups()
        for task in client.api.tasks(filters={"service": service, "desired-state": "running"}):
            container_id = task["Status"].get("ContainerStatus", {}).get("ContainerID")
            if not container_id:
                continue
            started = parse_docker_time(client.api.inspect_container(container_id)["State"]["StartedAt"])
            created = parse_docker_time(task["CreatedAt"])
            running = parse_docker_time(task["Status"]["Timestamp"])
            if started is not None and created is not None and running is not None:
                figures.to_container_start_s.append(started - created)
                figures.start_to_healthy_s.append(running - started)
        backend.scale_to(0)
        _wait("Swarm tasks stopped", lambda: not client.containers.list(
            filters={"label": f"com.docker.swarm.service.name={service}"}, ignore_removed=True), timeout_s=120)  # fmt: skip
    finally:
        backend.close()


def _row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"| {name} | {len(values)} | {statistics.median(values):.2f} | {p90:.2f} | {max(values):.2f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replica_startup", description=__doc__)
    parser.add_argument("--replicas", type=int, default=3, help="replicas started per round and backend")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    import docker
    from docker.types import EndpointSpec, Healthcheck, ServiceMode

    image = _build_images()
    command, check = _replica_service_spec()
    client = docker.from_env(timeout=60)
    service = f"prewarm-bench-startup-{int(time.time())}"
    client.services.create(
        image, args=command, name=service, mode=ServiceMode("replicated", replicas=0),
        healthcheck=Healthcheck(
            test=check["test"], interval=_duration_ns(check["interval"]), timeout=_duration_ns(check["timeout"]),
            retries=int(check["retries"]), start_period=_duration_ns(check["start_period"]),
        ),
        endpoint_spec=EndpointSpec(mode="dnsrr"), stop_grace_period=5 * NS,
    )  # fmt: skip
    local, swarm = Figures(), Figures()
    try:
        with tempfile.TemporaryDirectory(prefix="prewarm-bench-startup-") as state_root:
            for _ in range(args.rounds):
                _local_round(args.replicas, Path(state_root), local)
                _swarm_round(client, service, args.replicas, swarm)
    finally:
        client.services.get(service).remove()
        client.close()

    margin = ScalingPolicy().lead_time_margin_s
    local_s, swarm_s = statistics.median(local.startups_s), statistics.median(swarm.startups_s)
    print(f"Replica start to ready, {args.rounds} rounds of 0 -> {args.replicas} replicas per backend "
          f"(image {image}; Swarm health check every {check['interval']}):\n")  # fmt: skip
    print("| replica startup (s), as its backend records it | replicas | median | p90 | max |")
    print("|---|---:|---:|---:|---:|")
    print(_row("local process: spawn to first ready probe", local.startups_s))
    print(_row("Swarm task: created to running and healthy", swarm.startups_s))
    print(_row("... of which task created to container started", swarm.to_container_start_s))
    print(_row("... of which container started to healthy", swarm.start_to_healthy_s))
    print(_row("local: scale_to() to all ready (wall)", local.all_ready_s))
    print(_row("Swarm: scale_to() to all ready (wall)", swarm.all_ready_s))
    print()
    print(f"Swarm / local startup (medians): {swarm_s / local_s:.1f}x")
    print(f"Lead time (measured startup + margin {margin:g} s): local {local_s + margin:.1f} s, Swarm "
          f"{swarm_s + margin:.1f} s (before any measurement: default {ScalingPolicy().default_replica_startup_s:g} s"
          f" + {margin:g} s)")  # fmt: skip
    print(f"Simulator's cluster: startup {DEFAULT_SCHEDULING_DELAY_S:g} s scheduling + {DEFAULT_PREWARM_S:g} s "
          f"pre-warm (a Kubernetes pod); this Swarm: --scheduling-delay-s "
          f"{statistics.median(swarm.to_container_start_s):.1f} --prewarm-s "
          f"{statistics.median(swarm.start_to_healthy_s):.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
