"""The local process backend: runs ``prewarm replica`` processes on this machine and keeps their number right.

A supervisor thread (every ``tick_s``) probes starting replicas until ready, replaces replicas that die or stop
answering, drains and stops surplus ones, keeps a warm pool of parked replicas (started, loaded and warmed, not
serving; a scale-up joins them first, then the pool is refilled in the background), and publishes the replica set to ``<state_dir>/replicas.json`` for the
gateway (see inference/gateway/registry.py). On start it adopts the healthy replicas a previous backend left behind
and kills the rest, so a backend restart leaves no orphans and drops no traffic.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from controller.backends import local_events as ev
from controller.backends.base import BackendError, PoolCounts, ReplicaInfo, ReplicaState
from controller.backends.local_events import Event, EventSink, LogEventSink
from controller.backends.local_process import (
    find_owned_processes,
    free_port,
    is_alive,
    probe_ready,
    same_process,
    send_signal,
    spawn,
)
from inference.gateway.registry import (
    GATEWAY_FILE,
    REPLICAS_FILE,
    RegistrySnapshot,
    ReplicaRecord,
    read_gateway_load,
    read_registry,
    write_registry,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalBackendConfig:
    """How to run one deployment's replicas locally (``command`` placeholders: {port} {host} {model} {model_repo}
    {grpc_port}; a replica gets a gRPC port, published for the gateway, when its command takes one)."""

    deployment: str
    model: str
    state_dir: Path  # this deployment's directory: replicas.json, gateway.json, logs/
    model_repo: str = "models/onnx"
    host: str = "127.0.0.1"
    command: tuple[str, ...] = ()  # default: this Python running ``python -m inference replica``
    tick_s: float = 0.1
    probe_timeout_s: float = 0.5
    liveness_interval_s: float = 0.5
    liveness_failures_to_replace: int = 3
    ready_timeout_s: float = 120.0
    drain_s: float = 0.5  # after leaving the registry: time for the gateway to stop routing to it
    drain_timeout_s: float = 10.0  # longest wait for in-flight work before SIGTERM
    stop_timeout_s: float = 10.0  # SIGTERM to SIGKILL
    grpc: bool = False  # the default command also serves V2 gRPC on a free port, published for the gateway
    restart_backoff_s: float = (
        0.0  # wait before replacing a failed replica (grows x2 per quick failure, max 10 s)
    )
    warm_pool_size: int = 0  # parked replicas kept ready to join (the policy's warm_pool_size overrides it)
    pool_refill_delay_s: float = 2.0  # after a join, wait this long before refilling (a startup competes for CPU)

    def replica_command(self, port: int, grpc_port: int | None = None) -> list[str]:
        values = {"port": port, "host": self.host, "model": self.model, "model_repo": self.model_repo,
                  "grpc_port": grpc_port}  # fmt: skip
        return [part.format(**values) for part in self.command_template]

    @property
    def command_template(self) -> tuple[str, ...]:
        return self.command or (
            sys.executable, "-m", "inference", "replica", "--model-repo", "{model_repo}", "--model", "{model}",
            "--host", "{host}", "--port", "{port}", *(("--grpc-port", "{grpc_port}") if self.grpc else ()),
        )  # fmt: skip

    @property
    def serves_grpc(self) -> bool:
        return any("{grpc_port}" in part for part in self.command_template)


@dataclass
class _Replica:
    replica_id: str
    port: int
    process: psutil.Process
    popen: subprocess.Popen[bytes] | None
    state: ReplicaState
    started_at: float  # epoch seconds
    started_mono: float
    create_time: float
    grpc_port: int | None = None
    liveness_failures: int = 0
    next_liveness_mono: float = 0.0
    stop_requested_mono: float | None = None
    term_sent_mono: float | None = None
    detail: str = field(default="")
    for_pool: bool = False  # started (or parked) for the warm pool, not counted in the desired count
    parked_mono: float | None = None


class LocalProcessBackend:
    """Implements ``ReplicaBackend`` with local processes; thread-safe, its supervisor runs in a daemon thread."""

    name = "local"

    def __init__(
        self, config: LocalBackendConfig, events: EventSink | None = None, adopt: bool = True
    ) -> None:
        self.config = config
        self.events: EventSink = events or LogEventSink()
        self._lock = threading.RLock()
        self._replicas: dict[str, _Replica] = {}
        self._desired = 0
        self._pool_size = config.warm_pool_size
        self._refill_after_mono = 0.0
        self._pools: dict[str, int] = {}  # pool -> replicas, in placement order (labels only)
        self._stop = threading.Event()
        self._probe_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="replica-probe")
        self._published: tuple[ReplicaRecord, ...] | None = None
        self._quick_failures = 0
        self._next_spawn_mono = 0.0
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self._owner = str(self.config.state_dir.resolve())
        if adopt:
            self._adopt_or_clean_up()
        self._publish()
        self._thread = threading.Thread(
            target=self._run, name=f"local-backend-{config.deployment}", daemon=True
        )
        self._thread.start()

    @classmethod
    def from_deployment(
        cls, deployment: str, model: str, backend_config: Mapping[str, Any], state_root: Path,
        events: EventSink | None = None,
    ) -> LocalProcessBackend:  # fmt: skip
        """Build from a deployment row's ``backend_config`` (keys: the LocalBackendConfig fields)."""
        allowed = set(LocalBackendConfig.__dataclass_fields__) - {"deployment", "model", "state_dir"}
        unknown = set(backend_config) - allowed
        if unknown:
            raise BackendError(
                f"unknown local backend settings {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        options = dict(backend_config)
        if "command" in options:
            options["command"] = tuple(options["command"])
        config = LocalBackendConfig(
            deployment=deployment, model=model, state_dir=state_root / deployment, **options
        )
        return cls(config, events)

    # ReplicaBackend
    def replicas(self) -> list[ReplicaInfo]:
        load = read_gateway_load(self.config.state_dir / GATEWAY_FILE)
        with self._lock:
            labels = self._pool_labels()
            return [
                ReplicaInfo(
                    r.replica_id,
                    r.state,
                    f"{self.config.host}:{r.port}",
                    load.get(r.replica_id),
                    r.started_at,
                    labels.get(r.replica_id),
                )
                for r in self._replicas.values()
            ]

    # PooledBackend: local processes are all alike; pools only label them (prices, for the demo)
    def scale_pools(self, counts: dict[str, int]) -> None:
        """Label replicas by pool (oldest first into the pools in the order given) and scale to the total."""
        with self._lock:
            self._pools = {p: max(0, n) for p, n in counts.items()}
        self.scale_to(sum(self._pools.values()))

    def pool_counts(self) -> dict[str, PoolCounts]:
        with self._lock:
            labels = self._pool_labels()
            ready = {r.replica_id for r in self._replicas.values() if r.state is ReplicaState.READY}
        return {
            pool: PoolCounts(n, sum(1 for rid, p in labels.items() if p == pool and rid in ready))
            for pool, n in self._pools.items()
        }

    def _pool_labels(self) -> dict[str, str]:
        """Replica id -> pool, the oldest replicas filling the pools in order (caller holds the lock)."""
        if not self._pools:
            return {}
        slots = [pool for pool, n in self._pools.items() for _ in range(n)]
        ordered = sorted(self._replicas.values(), key=lambda r: (r.started_at or 0.0, r.replica_id))
        return {r.replica_id: slots[i] for i, r in enumerate(ordered) if i < len(slots)}

    def desired_count(self) -> int:
        with self._lock:
            return self._desired

    def ready_count(self) -> int:
        with self._lock:
            return sum(1 for r in self._replicas.values() if r.state is ReplicaState.READY)

    def scale_to(self, replicas: int) -> None:
        if replicas < 0:
            raise BackendError(f"cannot scale to {replicas} replicas")
        with self._lock:
            if replicas != self._desired:
                log.info("%s: scale %d -> %d", self.config.deployment, self._desired, replicas)
            self._desired = replicas
            self._reconcile()
            self._publish()  # a parked replica that joined is routable as soon as the gateway reads this

    def set_warm_pool(self, size: int) -> None:
        """Keep ``size`` parked replicas (started, loaded, warmed, not serving) ready to join a scale-up."""
        if size < 0:
            raise BackendError(f"cannot keep a warm pool of {size} replicas")
        with self._lock:
            if size != self._pool_size:
                log.info("%s: warm pool %d -> %d", self.config.deployment, self._pool_size, size)
                self._pool_size = size
                self._reconcile()
                self._publish()

    def parked_count(self) -> int:
        """Replicas parked in the warm pool now."""
        with self._lock:
            return sum(1 for r in self._replicas.values() if r.state is ReplicaState.PARKED)

    def close(self, stop_replicas: bool = True) -> None:
        """Stop the supervisor; with ``stop_replicas`` also drain and stop every replica (else a new backend adopts them)."""
        if stop_replicas:
            with self._lock:
                self._pool_size = 0
            self.scale_to(0)
            deadline = (
                time.monotonic()
                + self.config.drain_s
                + self.config.drain_timeout_s
                + self.config.stop_timeout_s
                + 2
            )
            while time.monotonic() < deadline:
                with self._lock:
                    if not self._replicas:
                        break
                time.sleep(self.config.tick_s)
        self._stop.set()
        self._thread.join(timeout=5)
        self._probe_pool.shutdown(wait=False, cancel_futures=True)
        if stop_replicas:
            with self._lock:
                for replica in list(self._replicas.values()):
                    send_signal(replica.process, signal.SIGKILL)
                    self._forget(replica, ev.STOPPED, "killed at backend close")
                self._publish()

    # supervisor
    def _run(self) -> None:
        while not self._stop.wait(self.config.tick_s):
            try:
                self._tick()
            except Exception:
                log.exception("local backend supervisor tick failed")

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            replicas = list(self._replicas.values())
        to_probe = [
            r for r in replicas
            if r.state is ReplicaState.STARTING
            or (r.state in (ReplicaState.READY, ReplicaState.PARKED) and now >= r.next_liveness_mono)
        ]  # fmt: skip
        results = dict(
            zip(
                [r.replica_id for r in to_probe],
                self._probe_pool.map(
                    lambda r: probe_ready(self.config.host, r.port, self.config.probe_timeout_s), to_probe
                ),
                strict=True,
            )
        )
        with self._lock:
            for replica in list(self._replicas.values()):
                self._check(replica, results.get(replica.replica_id), time.monotonic())
            self._reconcile()
            self._publish()

    def _check(self, replica: _Replica, probe: bool | None, now: float) -> None:
        alive, how = is_alive(replica.process, replica.popen)
        if not alive:
            if replica.state is ReplicaState.STOPPING:
                self._forget(replica, ev.STOPPED, how)
            else:
                self._fail(replica, f"process {how}")
            return
        if replica.state is ReplicaState.STARTING:
            if probe:
                replica.state = ReplicaState.PARKED if replica.for_pool else ReplicaState.READY
                replica.parked_mono = now if replica.for_pool else None
                replica.next_liveness_mono = now + self.config.liveness_interval_s
                startup_s = time.time() - replica.started_at
                self._quick_failures = 0
                where = "parked in the warm pool" if replica.for_pool else f"port {replica.port}"
                self.events.record(Event(replica.replica_id, ev.READY, startup_s, where))
            elif now - replica.started_mono > self.config.ready_timeout_s:
                self._fail(replica, f"not ready within {self.config.ready_timeout_s:g} s")
        elif replica.state in (ReplicaState.READY, ReplicaState.PARKED) and probe is not None:
            replica.next_liveness_mono = now + self.config.liveness_interval_s
            replica.liveness_failures = 0 if probe else replica.liveness_failures + 1
            if replica.liveness_failures >= self.config.liveness_failures_to_replace:
                self._fail(replica, f"stopped answering ({replica.liveness_failures} failed probes)")
        elif replica.state is ReplicaState.STOPPING:
            self._advance_stop(replica, now)

    def _advance_stop(self, replica: _Replica, now: float) -> None:
        assert replica.stop_requested_mono is not None
        config = self.config
        if replica.term_sent_mono is None:
            waited = now - replica.stop_requested_mono
            if waited < config.drain_s:
                return
            in_flight = read_gateway_load(config.state_dir / GATEWAY_FILE).get(replica.replica_id, 0)
            if in_flight > 0 and waited < config.drain_s + config.drain_timeout_s:
                return
            send_signal(replica.process, signal.SIGTERM)
            replica.term_sent_mono = now
        elif now - replica.term_sent_mono > config.stop_timeout_s:
            log.warning(
                "replica %s ignored SIGTERM for %g s: SIGKILL", replica.replica_id, config.stop_timeout_s
            )
            send_signal(replica.process, signal.SIGKILL)
            replica.term_sent_mono = now  # wait for it to disappear

    def _fail(self, replica: _Replica, reason: str) -> None:
        """Record the failure, kill what is left of the process, forget it; reconcile starts a replacement."""
        send_signal(replica.process, signal.SIGKILL)
        if replica.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                replica.popen.wait(timeout=2)
        if time.monotonic() - replica.started_mono < 10:
            self._quick_failures += 1
        if self.config.restart_backoff_s > 0 and self._quick_failures:
            backoff = min(self.config.restart_backoff_s * 2 ** (self._quick_failures - 1), 10.0)
            self._next_spawn_mono = time.monotonic() + backoff
        self._forget(replica, ev.FAILED, reason)

    def _forget(self, replica: _Replica, event: str, detail: str) -> None:
        self._replicas.pop(replica.replica_id, None)
        self.events.record(Event(replica.replica_id, event, None, detail))

    def _reconcile(self) -> None:
        active = [
            r for r in self._replicas.values()
            if r.state in (ReplicaState.STARTING, ReplicaState.READY) and not r.for_pool
        ]  # fmt: skip
        missing = self._desired - len(active)
        if missing > 0:
            missing -= self._join_from_pool(missing)
        if missing > 0 and time.monotonic() >= self._next_spawn_mono:
            for _ in range(missing):
                self._start_one()
        elif missing < 0:
            for replica in self._pick_victims(active, -missing):
                self._stop_replica(replica, "scale down")
        self._keep_pool()

    def _join_from_pool(self, wanted: int) -> int:
        """Parked replicas join the serving set first, then pool replicas still starting are given to it."""
        pool = [r for r in self._replicas.values() if r.for_pool and r.state is not ReplicaState.STOPPING]
        pool.sort(key=lambda r: (r.state is not ReplicaState.PARKED, r.started_mono))
        joined = pool[:wanted]
        now = time.monotonic()
        if joined:
            self._refill_after_mono = now + self.config.pool_refill_delay_s
        for replica in joined:
            replica.for_pool = False
            if replica.state is ReplicaState.PARKED:
                replica.state = ReplicaState.READY
                parked_s = now - (replica.parked_mono or now)
                self.events.record(Event(replica.replica_id, ev.JOINED, parked_s, f"port {replica.port}"))
                log.info("replica %s joined from the warm pool", replica.replica_id)
        return len(joined)

    def _keep_pool(self) -> None:
        """Refill the warm pool to its size (in the background: new replicas start parked; not in the first
        ``pool_refill_delay_s`` after a join, so that a startup does not compete with the first requests), or shrink
        it."""
        pool = [r for r in self._replicas.values() if r.for_pool and r.state is not ReplicaState.STOPPING]
        missing = self._pool_size - len(pool)
        now = time.monotonic()
        if missing > 0 and now >= self._next_spawn_mono and now >= self._refill_after_mono:
            for _ in range(missing):
                self._start_one(for_pool=True)
        elif missing < 0:
            pool.sort(key=lambda r: (r.state is ReplicaState.PARKED, -r.started_mono))  # starting ones first
            for replica in pool[:-missing]:
                self._stop_replica(replica, "warm pool shrinks")

    def _stop_replica(self, replica: _Replica, why: str) -> None:
        replica.state = ReplicaState.STOPPING
        replica.stop_requested_mono = time.monotonic()
        log.info("stopping replica %s (%s)", replica.replica_id, why)

    def _pick_victims(self, active: list[_Replica], count: int) -> list[_Replica]:
        """Least in-flight work first: starting replicas (no traffic yet), then the least busy, then the youngest."""
        load = read_gateway_load(self.config.state_dir / GATEWAY_FILE)

        def cost(replica: _Replica) -> tuple[int, int, float]:
            serving = 0 if replica.state is ReplicaState.STARTING else 1
            return (serving, load.get(replica.replica_id, 0), -replica.started_mono)

        return sorted(active, key=cost)[:count]

    def _start_one(self, for_pool: bool = False) -> None:
        port = free_port(self.config.host)
        grpc_port = free_port(self.config.host) if self.config.serves_grpc else None
        replica_id = f"{self.config.deployment}-{uuid.uuid4().hex[:6]}"
        command = self.config.replica_command(port, grpc_port)
        try:
            popen = spawn(command, self._owner, self.config.state_dir / "logs" / f"{replica_id}.log")
            process = psutil.Process(popen.pid)
            create_time = process.create_time()
        except (OSError, psutil.Error) as error:
            self.events.record(Event(replica_id, ev.FAILED, None, f"could not start {command[0]}: {error}"))
            raise BackendError(f"could not start replica: {error}") from error
        replica = _Replica(
            replica_id,
            port,
            process,
            popen,
            ReplicaState.STARTING,
            time.time(),
            time.monotonic(),
            create_time,
            grpc_port,
            for_pool=for_pool,
        )
        self._replicas[replica_id] = replica
        self.events.record(Event(replica_id, ev.STARTED, None, f"pid {popen.pid} port {port}"))
        self._publish()  # before anything else can fail: a restarted backend must know this process

    # registry and adoption
    def _publish(self) -> None:
        records = tuple(
            ReplicaRecord(
                r.replica_id,
                self.config.host,
                r.port,
                r.state.value,
                r.process.pid,
                r.started_at,
                r.create_time,
                r.grpc_port,
            )
            for r in self._replicas.values()
        )
        if records == self._published:
            return
        snapshot = RegistrySnapshot(self.config.deployment, records, time.time(), psutil.Process().pid)
        write_registry(self.config.state_dir / REPLICAS_FILE, snapshot)
        self._published = records

    def _adopt_or_clean_up(self) -> None:
        """Adopt replicas of a previous backend that still answer; kill the rest (also unregistered orphans)."""
        snapshot = read_registry(self.config.state_dir / REPLICAS_FILE)
        adopted_pids: set[int] = set()
        for record in snapshot.replicas if snapshot else ():
            if record.pid is None:
                continue
            process = same_process(record.pid, record.create_time)
            if process is None:
                continue
            if record.state in ("ready", "starting", "parked") and probe_ready(record.host, record.port, 2.0):
                parked = record.state == "parked"
                replica = _Replica(
                    record.replica_id, record.port, process, None,
                    ReplicaState.PARKED if parked else ReplicaState.READY,
                    record.started_at or time.time(), time.monotonic(), record.create_time or process.create_time(),
                    record.grpc_port, next_liveness_mono=time.monotonic(), for_pool=parked,
                    parked_mono=time.monotonic() if parked else None,
                )  # fmt: skip
                self._replicas[record.replica_id] = replica
                adopted_pids.add(process.pid)
                self.events.record(
                    Event(record.replica_id, ev.ADOPTED, None, f"pid {process.pid} port {record.port}")
                )
        self._desired = sum(1 for r in self._replicas.values() if not r.for_pool)
        for process in find_owned_processes(self._owner):
            if process.pid not in adopted_pids:
                log.warning("killing orphan replica process %d left by a previous backend", process.pid)
                send_signal(process, signal.SIGKILL)
                self.events.record(
                    Event(f"pid-{process.pid}", ev.STOPPED, None, "orphan killed on backend start")
                )
