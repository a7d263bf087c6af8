"""Docker Swarm backend: scale a replicated Swarm service through the Docker Engine API (the Docker SDK for Python).

Swarm creates and removes the tasks; prewarm only writes the service's ``Mode.Replicated.Replicas``, conditionally
on the spec version it read (a concurrent change makes the write fail with "update out of sequence": it is re-read
and retried). A task counts as ready when it is running: for a service with a health check, Swarm reports a task
running only once its container is healthy, so running means running and healthy. Each task's startup, from its
creation to running, is recorded once as a ``ready`` replica event, so the lead time follows the cluster.
Errors (service gone, daemon unreachable, permission denied on the socket, not a Swarm manager) raise
``BackendError`` with a message saying what to do, after logging it; the loop holds the count and counts the error.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from controller.backends import local_events as ev
from controller.backends.base import BackendError, ReplicaInfo, ReplicaState
from controller.backends.local_events import Event, EventSink, LogEventSink

if TYPE_CHECKING:
    from docker import DockerClient

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"
# Task states (swarmkit's TaskState) before running: the container is being created, started or health-checked.
STARTING_STATES = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
_DOCKER_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")


class SwarmApiError(BackendError):
    """The Docker Engine refused an operation or did not answer; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SwarmTarget:
    """Which Swarm service to scale and how to reach the engine (from a deployment's ``backend_config``)."""

    service: str
    docker_url: str | None = None  # None: $DOCKER_HOST, else the local socket
    timeout_s: float = 5.0  # per Engine API call
    max_attempts: int = 4  # per scale, when a concurrent update makes the conditional write fail

    def __post_init__(self) -> None:
        if not self.service:
            raise ValueError("a Swarm target needs 'service', the name or id of a replicated Swarm service")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], default_name: str | None = None) -> SwarmTarget:
        """Build from a deployment's ``backend_config``; ``service`` defaults to the prewarm deployment name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown Swarm backend_config keys {unknown}; known keys: {sorted(known)}")
        values = dict(config)
        if default_name is not None:
            values.setdefault("service", default_name)
        return cls(**values)

    @property
    def url(self) -> str:
        return self.docker_url or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_URL

    @property
    def ref(self) -> str:
        return f"Swarm service {self.service!r}"


def parse_docker_time(text: str | None) -> float | None:
    """Epoch seconds of an Engine API timestamp (RFC 3339 with nanoseconds); None for a missing or zero time."""
    match = _DOCKER_TIME.fullmatch(text or "")
    if match is None or text is None or text.startswith("0001-01-01"):
        return None
    base, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(base + ("+00:00" if zone in (None, "Z") else zone)).timestamp()
    return stamp + float(fraction or 0.0)  # the fraction apart: fromisoformat stops at microseconds


@dataclass(frozen=True)
class Task:
    """What the backend reads of one Swarm task."""

    task_id: str
    slot: int | None
    state: str  # Status.State
    desired_state: str
    created_at: float | None
    state_at: float | None  # Status.Timestamp: when the task entered its current state
    error: str
    address: str | None

    @classmethod
    def from_api(cls, task: Mapping[str, Any]) -> Task:
        status = task.get("Status") or {}
        address = None
        for attachment in task.get("NetworksAttachments") or []:
            addresses = attachment.get("Addresses") or []
            if addresses and (attachment.get("Network") or {}).get("Spec", {}).get("Name") != "ingress":
                address = str(addresses[0]).split("/", 1)[0]
                break
        return cls(
            task_id=str(task.get("ID", "")),
            slot=task.get("Slot"),
            state=str(status.get("State", "")),
            desired_state=str(task.get("DesiredState", "")),
            created_at=parse_docker_time(task.get("CreatedAt")),
            state_at=parse_docker_time(status.get("Timestamp")),
            error=str(status.get("Err") or status.get("Message") or ""),
            address=address,
        )

    @property
    def replica_state(self) -> ReplicaState | None:
        """Its place in the replica life cycle; None for a task that ended and is only kept as history."""
        if self.desired_state == "running":
            if self.state == "running":
                return ReplicaState.READY
            if self.state in STARTING_STATES:
                return ReplicaState.STARTING
            return ReplicaState.FAILED  # ended while it should run: Swarm replaces it
        if self.state in ("running", "starting"):
            return ReplicaState.STOPPING  # asked to stop (scale-down, update), still running
        return None

    @property
    def replica_id(self) -> str:
        return self.task_id[:12]


class SwarmBackend:
    """Scales one replicated Swarm service; blocking calls, each bounded by ``timeout_s``."""

    name = "swarm"

    def __init__(self, target: SwarmTarget, events: EventSink | None = None) -> None:
        self.target = target
        self.events = events or LogEventSink()
        self._client: DockerClient | None = None  # made on first use, and again after a connection failure
        self._recorded: dict[str, set[str]] = {}  # task id -> the events recorded for it
        self._first_listing = True

    # --- the protocol ---------------------------------------------------------------------------------------

    def replicas(self) -> list[ReplicaInfo]:
        """The service's tasks that should run or are still stopping, with their state."""
        tasks = self._tasks()
        self._record_events(tasks)
        replicas = []
        for task in tasks:
            state = task.replica_state
            if state is None:
                continue
            replicas.append(
                ReplicaInfo(
                    replica_id=task.replica_id,
                    state=state,
                    address=task.address,
                    started_at=task.state_at if state is ReplicaState.READY else task.created_at,
                )
            )
        return replicas

    def ready_count(self) -> int:
        """Tasks running (and healthy, when the service has a health check)."""
        return sum(1 for replica in self.replicas() if replica.state is ReplicaState.READY)

    def desired_count(self) -> int:
        """``Mode.Replicated.Replicas`` of the service: what was last asked for, by anyone."""
        return _replicas_of(self._inspect(), self.target)

    def scale_to(self, replicas: int) -> None:
        """Write the service's replica count unless it already holds it; re-read and retry on a conflict."""
        if replicas < 0:
            raise ValueError(f"cannot scale to {replicas} replicas")
        for attempt in range(1, self.target.max_attempts + 1):
            service = self._inspect()
            current = _replicas_of(service, self.target)
            if current == replicas:
                logger.debug("%s already at %d replicas", self.target.ref, replicas)
                return
            try:
                self._write_replicas(service, replicas)
            except SwarmApiError as error:
                if "out of sequence" in str(error) and attempt < self.target.max_attempts:
                    logger.warning(
                        "scale %s: changed by someone else meanwhile (attempt %d/%d), re-reading",
                        self.target.ref, attempt, self.target.max_attempts,
                    )  # fmt: skip
                    continue
                raise
            logger.info("%s scaled from %d to %d replicas", self.target.ref, current, replicas)
            return
        raise AssertionError("unreachable")  # pragma: no cover (the last attempt returns or raises)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- helpers --------------------------------------------------------------------------------------------

    def _write_replicas(self, service: Mapping[str, Any], replicas: int) -> None:
        """Write the spec back as read, changed only in its replica count, as ``docker service scale`` does; the
        version makes the write conditional (a concurrent change fails it with "update out of sequence")."""
        spec = {**service["Spec"], "Mode": {"Replicated": {"Replicas": replicas}}}
        service_id, version = str(service["ID"]), int(service["Version"]["Index"])

        def update(client: DockerClient) -> None:
            client.api.update_service(
                service_id,
                version,
                name=spec.get("Name"),
                labels=spec.get("Labels"),
                mode=spec["Mode"],
                task_template=spec.get("TaskTemplate"),
                update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"),
                endpoint_spec=spec.get("EndpointSpec"),
            )

        self._call("scale", update)

    def _inspect(self) -> dict[str, Any]:
        service = self._call("inspect", lambda client: client.api.inspect_service(self.target.service))
        return dict(service)

    def _tasks(self) -> list[Task]:
        service = self._inspect()
        raw = self._call("list tasks of", lambda client: client.api.tasks(filters={"service": service["ID"]}))
        return [Task.from_api(task) for task in raw]

    def _record_events(self, tasks: list[Task]) -> None:
        """Each task's start, readiness (with its startup seconds), failure and stop, once each.

        Tasks that were already there when the backend first looked (a controller restart) are adopted, not
        measured: their startup was recorded by the controller that saw them start.
        """
        first, self._first_listing = self._first_listing, False
        present = {task.task_id for task in tasks}
        for task_id, done in list(self._recorded.items()):
            if task_id not in present:  # Swarm dropped it from its task history
                if ev.STARTED in done and not done & {ev.STOPPED, ev.FAILED}:
                    # Seen alive and gone between two listings (a scaled-down task is removed, not kept as history,
                    # and can go in less than a listing's interval): it stopped all the same.
                    self.events.record(Event(task_id[:12], ev.STOPPED, None, "removed by Swarm"))
                del self._recorded[task_id]
        for task in tasks:
            done = self._recorded.setdefault(task.task_id, set())
            if first:
                state = task.replica_state
                if state is ReplicaState.STARTING:
                    done.add(ev.STARTED)  # its startup is still measured when it becomes ready
                elif state in (ReplicaState.READY, ReplicaState.STOPPING):
                    done.update((ev.STARTED, ev.READY))
                    if state is ReplicaState.READY:
                        self._emit(
                            task, ev.ADOPTED, None, f"running at backend start, address {task.address}"
                        )
                else:  # history: tasks that ended before this backend looked
                    done.update((ev.STARTED, ev.READY, ev.FAILED, ev.STOPPED))
                continue
            if ev.STARTED not in done:
                done.add(ev.STARTED)
                self._emit(task, ev.STARTED, None, f"slot {task.slot}")
            if task.state == "running" and ev.READY not in done:
                done.add(ev.READY)
                startup_s = None
                if task.created_at is not None and task.state_at is not None:
                    startup_s = max(0.0, task.state_at - task.created_at)
                self._emit(task, ev.READY, startup_s, f"address {task.address}")
            if task.state in ("failed", "rejected", "orphaned") and ev.FAILED not in done:
                done.add(ev.FAILED)
                self._emit(task, ev.FAILED, None, f"{task.state}: {task.error}")
            elif task.state in ("shutdown", "complete", "remove") and ev.STOPPED not in done:
                done.add(ev.STOPPED)
                self._emit(task, ev.STOPPED, None, task.state)

    def _emit(self, task: Task, event: str, duration_s: float | None, detail: str) -> None:
        self.events.record(Event(task.replica_id, event, duration_s, detail))

    def _docker(self) -> DockerClient:
        if self._client is None:
            self._client = _docker_client(self.target)
        return self._client

    def _call(self, what: str, operation: Callable[[DockerClient], T]) -> T:
        """Run one Engine API call; translate every failure into a ``SwarmApiError`` that says what to do."""
        import requests
        from docker.errors import APIError, DockerException, NotFound

        target = self.target
        try:
            return operation(self._docker())
        except NotFound as error:
            message = (
                f"{what} {target.ref}: not found ({_explanation(error)}); deploy the stack that defines it "
                f"or correct 'service' in the deployment's backend_config"
            )
            status = 404
        except APIError as error:
            status = int(error.status_code or 0)
            detail = _explanation(error)
            if status == 503 and "swarm" in detail.lower():
                message = (
                    f"{what} {target.ref}: the engine at {target.url} is not a Swarm manager ({detail}); run "
                    f"'docker swarm init' or point docker_url at a manager node"
                )
            else:
                message = f"{what} {target.ref}: HTTP {status} ({detail})"
        except (requests.exceptions.RequestException, DockerException, OSError) as error:
            status = 0
            message = self._unreachable(what, error)
            self._drop_client()
        logger.error("%s", message)
        raise SwarmApiError(message, status)

    def _unreachable(self, what: str, error: BaseException) -> str:
        target = self.target
        if _caused_by(error, PermissionError):
            socket_path = target.url.removeprefix("unix://")
            return (
                f"{what} {target.ref}: permission denied on the Docker socket {socket_path}; run the controller "
                f"as root or in the group that owns the socket (stat -c %g {socket_path})"
            )
        import requests

        if isinstance(error, requests.exceptions.Timeout):
            return (
                f"{what} {target.ref}: the Docker engine at {target.url} did not answer within "
                f"{target.timeout_s} s; raise timeout_s in the backend_config if it is only slow"
            )
        return (
            f"{what} {target.ref}: the Docker engine at {target.url} is unreachable ({_first_line(error)}); is "
            f"dockerd running, and is the socket mounted into the controller's container?"
        )

    def _drop_client(self) -> None:
        """After a connection failure, start over with a fresh client (the daemon may come back elsewhere)."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing a broken client must not hide the error being reported
                logger.debug("closing the Docker client failed", exc_info=True)
            self._client = None


def _docker_client(target: SwarmTarget) -> DockerClient:
    import docker

    # A fixed API version: no version request at construction (that would fail while the daemon is down); 1.41
    # is Docker 20.10's, answered by every engine since.
    return docker.DockerClient(base_url=target.url, version="1.41", timeout=target.timeout_s)


def _replicas_of(service: Mapping[str, Any], target: SwarmTarget) -> int:
    mode = (service.get("Spec") or {}).get("Mode") or {}
    if "Replicated" not in mode:
        kind = next(iter(mode), "an unknown").lower()
        message = f"{target.ref} runs in {kind} mode; only a replicated service can be scaled"
        logger.error("%s", message)
        raise BackendError(message)
    return int((mode["Replicated"] or {}).get("Replicas") or 0)


def _explanation(error: Any) -> str:
    return str(getattr(error, "explanation", None) or error)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _caused_by(error: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is anywhere in the error's chain or arguments (requests wraps socket errors deeply)."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        if isinstance(current, BaseException):
            stack.extend([current.__cause__, current.__context__, *current.args])
            stack.append(getattr(current, "reason", None))
    return False
