"""The replica registry file: how a backend in one process tells a gateway in another which replicas exist.

The local backend rewrites ``replicas.json`` atomically (write + rename) on every change; the gateway polls its
mtime a few times a second. The gateway writes ``gateway.json`` (in-flight requests per replica) beside it, which the
backend reads to pick the least busy replica on scale-down. A file keeps the two processes independent: either can
restart without the other noticing more than a short pause in updates.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPLICAS_FILE = "replicas.json"
GATEWAY_FILE = "gateway.json"


@dataclass(frozen=True)
class ReplicaRecord:
    """One replica as published by its backend: only ``state == "ready"`` receives traffic."""

    replica_id: str
    host: str
    port: int
    state: str
    pid: int | None = None
    started_at: float | None = None  # epoch seconds
    create_time: float | None = (
        None  # the process's create time, to recognise it (not a recycled pid) on adopt
    )
    grpc_port: int | None = None  # its V2 gRPC service, if it serves one

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RegistrySnapshot:
    """The whole registry file: the deployment, its replicas and when the backend wrote it."""

    deployment: str
    replicas: tuple[ReplicaRecord, ...] = ()
    written_at: float = field(default_factory=time.time)
    backend_pid: int | None = None


def write_json_atomic(path: Path, payload: object) -> None:
    """Write JSON so that readers see the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_registry(path: Path, snapshot: RegistrySnapshot) -> None:
    """Publish the replica set."""
    payload = {
        "deployment": snapshot.deployment,
        "written_at": snapshot.written_at,
        "backend_pid": snapshot.backend_pid,
        "replicas": [asdict(record) for record in snapshot.replicas],
    }
    write_json_atomic(path, payload)


def read_registry(path: Path) -> RegistrySnapshot | None:
    """The published replica set, or None if there is no (readable) file yet."""
    try:
        payload = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    replicas = tuple(ReplicaRecord(**record) for record in payload.get("replicas", []))
    return RegistrySnapshot(
        deployment=str(payload.get("deployment", "")),
        replicas=replicas,
        written_at=float(payload.get("written_at", 0.0)),
        backend_pid=payload.get("backend_pid"),
    )


def write_gateway_load(path: Path, in_flight_by_replica: dict[str, int]) -> None:
    """Publish the gateway's in-flight requests per replica (read by the backend on scale-down)."""
    write_json_atomic(path, {"written_at": time.time(), "in_flight": in_flight_by_replica})


def read_gateway_load(path: Path, max_age_s: float = 2.0) -> dict[str, int]:
    """In-flight requests per replica as last published by a gateway; empty if absent or stale."""
    try:
        payload = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if time.time() - float(payload.get("written_at", 0.0)) > max_age_s:
        return {}
    return {str(key): int(value) for key, value in payload.get("in_flight", {}).items()}
