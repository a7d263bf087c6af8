"""The reconcile loop: the thin shell around ``decide()``, for a fleet.

A *pass* (every ``tick_s``) looks for the deployments that are due (each every ``decision_interval_s``) among those
whose lease bucket this controller holds, reads their inputs from the store in a few queries for all of them
(``loop_inputs``) and their new samples in one (``StoreSource.prepare``), and hands each to a pool of worker
threads. A worker reads the backend's desired and ready counts, calls ``decide()``, scales if needed and returns an
outcome; the next pass records the finished outcomes (decisions and the live status of each deployment) in one
transaction fenced by the lease terms they were decided under.

Isolation: a deployment is never in two workers at once and is not dispatched again until its worker returns, so a
backend that hangs, a Prometheus query that times out, a stored policy that no longer validates or any unexpected
exception costs that deployment alone: it is logged with its name, counted in
``prewarm_controller_errors_total{deployment, stage}`` and shown in its status; the others are decided on time.

Fencing: every backend call checks first that the deployment's bucket is still held under the term it was
dispatched with (``FencedBackend``); a controller that lost its lease while paused makes no call when it resumes.

Restart: the decision state (the scale-down stabilisation window) is rebuilt from the decisions stored within the
window, so a restarted controller, or one that takes a bucket over, does not scale down earlier than the previous
owner would have.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import heapq
import logging
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from controller.backends.base import (
    BackendError,
    DrainNotice,
    PoolCounts,
    PooledBackend,
    ReplicaBackend,
    ReplicaInfo,
    scale_placement,
)
from controller.backends.factory import build_backend
from controller.capacity import CapacityEvidence, LearnedCapacity, learn
from controller.cost import CostMeter, money_per_hour
from controller.decide import Decision, DecisionState, Observations, decide
from controller.leases import LeaseManager, bucket_of
from controller.loop_inputs import (
    DeploymentRow,
    InputError,
    InputReader,
    Inputs,
    deployments_mark,
    read_deployments,
)
from controller.loop_metrics import ControllerMetrics
from controller.loop_pool import ReconcilePool
from controller.loop_record import Outcome, Recorder
from controller.placement import with_placement, without_holds
from controller.policy import ScalingPolicy
from controller.sources.window import ObservationWindow
from prewarm import metric_names as m
from prewarm.db.engine import among, session_factory
from prewarm.db.models import DeploymentStatus, ScalingDecision

logger = logging.getLogger(__name__)

DEPLOYMENTS_REFRESH_S = 1.0  # how often the deployment list is checked for change (new, deleted, re-created)
DEPLOYMENTS_FULL_READ_S = 60.0  # and read in full even when its mark did not change (an edit made outside the API)
INPUTS_REFRESH_S = 1.0  # how often policies, overrides, forecasts and startups of owned deployments are refreshed
RECORD_EVERY_S = 0.1  # the background recorder writes finished outcomes this often
STUCK_AFTER_S = 1.0  # a reconcile running this long holds a thread that the pool replaces for the others
LOCAL_IDENTITY = "local"  # the identity recorded when no lease manager is used (tests, single process)
ERROR_LOG_REPEAT_S = 60.0  # the same error of a deployment is logged again at most this often
INVALID_POLICY_RETRY_S = 5.0  # a deployment whose policy does not validate is looked at again this often
BUSY_RETRY_S = 0.5  # a deployment due while its previous reconcile still runs is looked at again after this
HELD_FRESH_S = 2.0  # an activator's count of held requests is believed this long (it pushes again every second)


class MetricsSource(Protocol):
    """Where recent per-second observations come from (the metrics store, or Prometheus)."""

    def window(
        self, deployment: str, end: datetime | float, duration_s: float, step_s: float = 1.0
    ) -> ObservationWindow: ...


BackendFactory = Callable[[DeploymentRow], ReplicaBackend]


class LeaseLost(RuntimeError):
    """The deployment's bucket is no longer held under the term its work was dispatched with."""


class FencedBackend:
    """A backend whose every call first checks the lease term (``ReplicaBackend`` protocol)."""

    def __init__(self, backend: ReplicaBackend, check: Callable[[], bool]) -> None:
        self.backend = backend
        self.name = backend.name
        self._check = check

    def _fence(self) -> None:
        if not self._check():
            raise LeaseLost("the lease of this deployment's bucket is no longer held")

    def desired_count(self) -> int:
        self._fence()
        return self.backend.desired_count()

    def ready_count(self) -> int:
        self._fence()
        return self.backend.ready_count()

    def scale_to(self, replicas: int) -> None:
        self._fence()
        self.backend.scale_to(replicas)

    def scale_pools(self, counts: dict[str, int]) -> None:
        self._fence()
        scale_placement(self.backend, counts)

    def pool_counts(self) -> dict[str, PoolCounts]:
        self._fence()
        return self.backend.pool_counts() if isinstance(self.backend, PooledBackend) else {}

    def drain_notices(self) -> list[DrainNotice]:
        """Spot replicas on nodes being drained, where the backend can see nodes (Kubernetes with pools)."""
        self._fence()
        drains = getattr(self.backend, "drain_notices", None)
        return list(drains()) if callable(drains) else []

    def replicas(self) -> list[ReplicaInfo]:
        self._fence()
        return self.backend.replicas()

    def set_warm_pool(self, size: int) -> None:
        """Forward the policy's warm pool size to a backend that keeps one (the local backend)."""
        keep = getattr(self.backend, "set_warm_pool", None)
        if keep is not None:
            self._fence()
            keep(size)

    def parked_count(self) -> int:
        """Parked warm-pool replicas of a backend that keeps a pool; 0 otherwise."""
        count = getattr(self.backend, "parked_count", None)
        return int(count()) if count is not None else 0

    def close(self) -> None:
        self.backend.close()


@dataclass
class DeploymentRuntime:
    """What the loop keeps in memory for one deployment between decisions."""

    row: DeploymentRow
    backend: ReplicaBackend
    state: DecisionState
    next_decision_at: float = 0.0
    bucket: int = 0
    busy: bool = False
    last_recorded_at: float = -1e18
    last_decision: Decision | None = None
    last_recorded_desired: int | None = None
    last_recorded_source: str | None = None
    current: int = 0
    ready: int = 0
    decided_at: float | None = None
    error_stage: str | None = None
    error_message: str | None = None
    error_at: float | None = None
    errors_total: int = 0
    history: list[str] = field(default_factory=list)  # recent error lines, newest last
    capacity: CapacityEvidence = field(default_factory=CapacityEvidence)
    learned: LearnedCapacity | None = None
    held_requests: int = 0  # as the gateway's activator last pushed it (controller/api: POST .../activate)
    held_at: float = -1e18  # when (epoch seconds)

    def held_now(self, now: float) -> int:
        """Requests the activator holds, if its last push is recent."""
        return self.held_requests if 0 <= now - self.held_at < HELD_FRESH_S else 0
    cost: CostMeter = field(default_factory=CostMeter)  # the cost since this controller took the deployment
    notices_seen: set[tuple[str, int, float]] = field(default_factory=set)  # interruption notices counted
    # (pool, pod) on a draining node -> when it leaves
    drained: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.row.name


class ReconcileLoop:
    """Reconciles the deployments this controller owns. ``pass_once`` dispatches one pass; ``reconcile_once``
    runs one pass to completion (tests and the simulator-like callers); ``run`` passes until stopped."""

    def __init__(
        self,
        engine: Engine,
        source: MetricsSource,
        *,
        backend_factory: BackendFactory | None = None,
        state_root: Path = Path("run"),
        record_unchanged_every_s: float = 60.0,
        metrics: ControllerMetrics | None = None,
        leases: LeaseManager | None = None,
        workers: int = 8,
        max_threads: int = 256,
    ) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)
        self.source = source
        self.state_root = state_root
        self.backend_factory = backend_factory or self._default_backend
        self.record_unchanged_every_s = record_unchanged_every_s
        self.metrics = metrics or ControllerMetrics.default()
        self.leases = leases
        self.identity = leases.identity if leases is not None else LOCAL_IDENTITY
        self.inputs = InputReader(self.sessions)
        self.recorder = Recorder(engine, self.identity, fenced=leases is not None)
        self.runtimes: dict[str, DeploymentRuntime] = {}
        self.database_ok = True
        self.last_pass_completed: float | None = None  # epoch seconds
        self._pool = ReconcilePool(workers, stuck_after_s=STUCK_AFTER_S, max_threads=max_threads)
        self._done: list[Outcome] = []
        self._done_lock = threading.Lock()
        self._rows: list[DeploymentRow] = []
        self._heap: list[tuple[float, int, str]] = []  # (due at, sequence, deployment)
        self._bucket_cache: dict[str, int] = {}
        self._sequence = 0
        self._synced_buckets: frozenset[int] | None = frozenset({-1})  # never equal at the first pass
        self._rows_read_at = -1e18
        self._rows_full_at = -1e18
        self._rows_mark: tuple[object, ...] | None = None
        self._passes = 0
        self._logged: dict[tuple[str, str], tuple[str, float]] = {}
        self._inputs_read_at = -1e18
        self._recording_in_background = False
        self._flush_lock = threading.Lock()
        self._outcomes_ready = threading.Event()
        self._activated: set[str] = set()  # deployments the gateway asked to activate, for the next pass
        self._wake = threading.Event()  # set by activate(): the run loop passes now rather than after its tick

    def _default_backend(self, row: DeploymentRow) -> ReplicaBackend:
        return build_backend(
            name=row.name,
            model=row.model,
            backend=row.backend,
            backend_config=dict(row.backend_config),
            min_replicas=row.min_replicas,
            engine=self.engine,
            state_root=self.state_root,
        )

    # -- ownership -----------------------------------------------------------------------------------------

    def _owned_buckets(self) -> dict[int, int] | None:
        """bucket -> term held now; None: everything (no lease manager)."""
        return self.leases.owned() if self.leases is not None else None

    def bucket(self, name: str) -> int:
        if self.leases is None:
            return 0
        bucket = self._bucket_cache.get(name)
        if bucket is None:
            bucket = self._bucket_cache[name] = bucket_of(name, self.leases.buckets)
        return bucket

    def owned_names(self) -> list[str]:
        """Deployments whose bucket this controller holds now (the forecast job fits only these)."""
        owned = self._owned_buckets()
        return [r.name for r in self._rows if owned is None or self.bucket(r.name) in owned]

    # -- activation (the gateway's push) ------------------------------------------------------------------

    def activate(self, name: str, held_requests: int, now: float | None = None) -> bool:
        """The gateway holds ``held_requests`` requests for ``name`` with no replica ready: reconcile it now, with the
        count in its observations. False when this controller does not own the deployment (yet)."""
        now = time.time() if now is None else now
        runtime = self.runtimes.get(name)
        if runtime is None:
            return False
        runtime.held_requests, runtime.held_at = held_requests, now
        if held_requests > 0:
            with self._done_lock:
                self._activated.add(name)
            self._wake.set()
        return True

    def _take_activations(self, now: float) -> None:
        """Make the activated deployments due now (in the pass thread, which owns the schedule)."""
        with self._done_lock:
            names, self._activated = self._activated, set()
        for name in names:
            runtime = self.runtimes.get(name)
            if runtime is not None and runtime.next_decision_at > now:
                self._schedule(runtime, now)  # the old heap entry is skipped (next_decision_at no longer matches)

    # -- one pass ------------------------------------------------------------------------------------------

    def reconcile_once(self, now: float | None = None, timeout_s: float = 60.0) -> dict[str, Decision]:
        """Run one pass to completion: every due deployment decided and recorded; returns those decisions."""
        futures = self.pass_once(now)
        wait(futures, timeout=timeout_s)
        outcomes = self._flush()
        return {o.name: o.decision for o in outcomes if o.decision is not None}

    def pass_once(self, now: float | None = None) -> list[Future[None]]:
        """Dispatch every due deployment to the workers (returns their futures); without a background recorder
        (``run``), first record what finished since the last pass."""
        started = time.perf_counter()
        now = time.time() if now is None else now
        if not self._recording_in_background:
            self._flush()
        futures: list[Future[None]] = []
        try:
            owned = self._owned_buckets()
            self._sync(now, owned)
            self._take_activations(now)
            due = self._due(now, owned)
            if due:
                self._refresh_inputs(due, now)
                found = {rt.row.id: self.inputs.get(rt.row.id, now) for rt in due}
                self._prepare_source(due, found, now)
            else:
                found = {}
        except SQLAlchemyError as error:
            self._database_down(error)  # the pass completed: holding the counts is what it should do now
            self._pass_done(started)
            return futures
        self._database_up()
        for runtime in due:
            inputs = found.get(runtime.row.id)
            interval = inputs.policy.decision_interval_s if isinstance(inputs, Inputs) else INVALID_POLICY_RETRY_S
            due_at = runtime.next_decision_at
            # Keep the phase (no drift), but never schedule catch-up bursts after a stall.
            self._schedule(runtime, due_at + interval if due_at + interval > now else now + interval)
            if inputs is None:  # deleted meanwhile, or no policy yet
                continue
            term = owned.get(runtime.bucket, 0) if owned is not None else 0
            runtime.busy = True
            futures.append(self._pool.submit(self._work, runtime, inputs, now, due_at, runtime.bucket, term))
        self._pool.compensate()  # threads stuck in a hanging backend are replaced for the others
        self._pass_done(started)
        return futures

    def _pass_done(self, started: float) -> None:
        self._passes += 1
        self.last_pass_completed = time.time()
        self.metrics.last_pass.set(self.last_pass_completed)
        self.metrics.pass_duration.observe(time.perf_counter() - started)

    def _refresh_inputs(self, due: list[DeploymentRuntime], now: float) -> None:
        """Refresh the input caches of every owned deployment about once a second (a few bulk queries), and at
        once for a due deployment not seen before."""
        unknown = any(not self.inputs.known(rt.row.id) for rt in due)
        if not unknown and 0 <= now - self._inputs_read_at < INPUTS_REFRESH_S:
            return
        owned = [rt.row.id for rt in self.runtimes.values()]
        self.inputs.refresh(owned, now)
        self._inputs_read_at = now

    def _sync(self, now: float, owned: dict[int, int] | None) -> None:
        """About once a second (and whenever the buckets held change): read the deployment list, build runtimes
        for the owned deployments that have none (their states in one query), release the others."""
        held = frozenset(owned) if owned is not None else None
        # Read the list about once a second, less often for a large fleet (reading it costs what it holds).
        every_s = max(DEPLOYMENTS_REFRESH_S, len(self._rows) / 1000)
        stale = now - self._rows_read_at >= every_s or now < self._rows_read_at
        if not stale and held == self._synced_buckets:
            return
        if stale:
            full = now - self._rows_full_at >= DEPLOYMENTS_FULL_READ_S or now < self._rows_full_at
            with self.sessions() as session:
                mark = deployments_mark(session)
                changed = full or mark != self._rows_mark
                if changed:
                    self._rows = read_deployments(session)
                    self._rows_full_at = now
            self._rows_mark = mark
            self._rows_read_at = now
            if not changed and held == self._synced_buckets:
                return  # nothing created or deleted, same buckets: the runtimes are as they should be
            if self.leases is not None:
                self.metrics.set_bucket_deployments(
                    collections.Counter(self.bucket(r.name) for r in self._rows), self.leases.buckets
                )
        self._synced_buckets = held
        mine = {r.name: r for r in self._rows if held is None or self.bucket(r.name) in held}
        existing = {r.name for r in self._rows}
        for name, runtime in list(self.runtimes.items()):
            row = mine.get(name)
            if row is None:
                self._release(name, "deleted" if name not in existing else "its bucket is held by another controller")
            elif row.id != runtime.row.id or row.backend_key != runtime.row.backend_key:
                self._release(name, "backend settings changed")
            else:
                runtime.row = row
        new = [row for name, row in mine.items() if name not in self.runtimes]
        if new:
            self._start_runtimes(new, now)
        self.metrics.deployments_owned.set(len(mine))

    def _due(self, now: float, owned: dict[int, int] | None) -> list[DeploymentRuntime]:
        """The runtimes whose time has come, from the schedule (a heap: a pass costs what is due, not the fleet)."""
        due: list[DeploymentRuntime] = []
        taken: set[str] = set()
        while self._heap and self._heap[0][0] <= now:
            at, _, name = heapq.heappop(self._heap)
            runtime = self.runtimes.get(name)
            if runtime is None or runtime.next_decision_at != at or name in taken:
                continue  # released, rescheduled since, or already due (an activation rescheduled it)
            if owned is not None and runtime.bucket not in owned:
                continue  # the next sync releases it
            if runtime.busy:  # still working on its previous decision: look again shortly
                self._schedule(runtime, now + BUSY_RETRY_S)
                continue
            due.append(runtime)
            taken.add(name)
        return due

    def _schedule(self, runtime: DeploymentRuntime, at: float) -> None:
        runtime.next_decision_at = at
        self._sequence += 1
        heapq.heappush(self._heap, (at, self._sequence, runtime.name))

    def _prepare_source(
        self, due: list[DeploymentRuntime], inputs: dict[int, Inputs | InputError | None], now: float
    ) -> None:
        prepare = getattr(self.source, "prepare", None)
        if prepare is None:
            return
        duration = max(
            (max(i.policy.stable_window_s, i.policy.panic_window_s) for i in inputs.values() if isinstance(i, Inputs)),
            default=60.0,
        )
        prepare([(rt.row.id, rt.name) for rt in due], now, duration)

    # -- one deployment (in a worker thread) ---------------------------------------------------------------

    def _work(
        self, runtime: DeploymentRuntime, inputs: Inputs | InputError, now: float, due_at: float, bucket: int,
        term: int,
    ) -> None:  # fmt: skip
        began = time.time()
        self.metrics.decision_lag.observe(max(0.0, began - due_at))
        outcome = Outcome(name=runtime.name, deployment_id=runtime.row.id, bucket=bucket, term=term, at=began)
        try:
            if isinstance(inputs, InputError):
                raise inputs
            leases = self.leases
            backend: ReplicaBackend = (
                FencedBackend(runtime.backend, lambda: leases.holds(bucket, term))
                if leases is not None
                else runtime.backend
            )
            self._decide_and_act(runtime, backend, inputs, now, outcome)
        except LeaseLost:
            outcome.fenced = True
        except InputError as error:
            outcome.fail(error.stage, str(error))
        except BackendError as error:
            outcome.fail("backend", f"backend {runtime.backend.name}: {error}")
        except SQLAlchemyError as error:
            outcome.fail("database", f"{type(error).__name__}: {error}")
        except Exception as error:  # a bug must cost this deployment alone
            message = f"{type(error).__name__}: {error}"
            if self._log_due(runtime.name, "traceback", message, began):
                logger.exception("deployment %s: unexpected error while reconciling", runtime.name,
                                 extra={"deployment": runtime.name, "stage": "unexpected"})  # fmt: skip
            outcome.fail("unexpected", message)
        finally:
            self.metrics.decision_seconds.observe(time.time() - began)
            with self._done_lock:
                self._done.append(outcome)
                self._outcomes_ready.set()
            runtime.busy = False

    def _decide_and_act(
        self, runtime: DeploymentRuntime, backend: ReplicaBackend, inputs: Inputs, now: float, outcome: Outcome
    ) -> None:
        policy = inputs.policy
        current = backend.desired_count()
        ready = backend.ready_count()
        runtime.current, runtime.ready = current, ready
        outcome.current, outcome.ready = current, ready
        window = self.source.window(runtime.name, now, max(policy.stable_window_s, policy.panic_window_s))
        if window.errors:
            outcome.warn("metrics", f"metrics source: {window.errors[0]}")
        runtime.learned = learn_capacity(runtime.capacity, window, ready, policy)
        observations = observations_from_window(window, current, ready, inputs.startup_s, inputs.overrides)
        observations = dataclasses.replace(
            observations, learned_capacity=runtime.learned, held_requests=runtime.held_now(now)
        )
        pools = backend.pool_counts() if policy.pools and isinstance(backend, PooledBackend) else {}
        leaving = inputs.leaving_at(now) if policy.pools else {}
        if policy.pools and callable(getattr(backend, "drain_notices", None)):
            leaving = self._drained(runtime, backend, policy, inputs, leaving, now, outcome)
        if policy.pools:  # replicas under a notice are still in the spec but not capacity: decide without them,
            # and without those the last placement kept only for a move between pools (not a decision to keep them)
            last = runtime.last_decision.placement if runtime.last_decision is not None else None
            serving = without_holds(max(0, current - sum(leaving.values())), last)
            if serving != current:
                observations = dataclasses.replace(observations, current_replicas=serving)
        decision = decide(policy, observations, inputs.forecast, runtime.state, now)
        decision = with_placement(
            policy,
            decision,
            leaving,
            {p: c.desired for p, c in pools.items()} if pools else None,
            {p: c.ready for p, c in pools.items()} if pools else None,
        )
        self.metrics.observe(runtime.name, policy, observations, inputs.forecast, decision, now)
        runtime.state = decision.new_state
        runtime.last_decision = decision
        self._export_cost(runtime, policy, decision, inputs, now)
        runtime.decided_at = now
        outcome.decision = decision
        outcome.policy_version = inputs.policy_version
        outcome.capacity = capacity_json(runtime.capacity, runtime.learned, decision, policy)
        keep_pool = getattr(backend, "set_warm_pool", None)
        if keep_pool is not None:
            keep_pool(policy.warm_pool_size)
            parked = getattr(backend, "parked_count", None)
            self.metrics.parked.labels(runtime.name).set(parked() if parked is not None else 0)
        placement = decision.placement
        moved = (
            policy.pools
            and placement is not None
            and any(pools.get(p, PoolCounts(0, 0)).desired != n for p, n in placement.scale_counts.items())
        )
        if decision.act and (decision.desired != current or moved):
            try:
                if policy.pools and placement is not None:
                    scale_placement(backend, placement.scale_counts)
                else:
                    backend.scale_to(decision.desired)
                outcome.applied = True
                logger.info(
                    "deployment %s: scaled %d -> %d (%s): %s",
                    runtime.name, current, decision.desired, decision.source, "; ".join(decision.reason_texts[-3:]),
                    extra={"deployment": runtime.name, "source": decision.source},
                )  # fmt: skip
            except BackendError as error:
                outcome.fail("backend", f"scale to {decision.desired} failed: {error}")
        outcome.record = self._should_record(runtime, decision, current, now)

    def _should_record(self, runtime: DeploymentRuntime, decision: Decision, current: int, now: float) -> bool:
        changed = (
            decision.desired != current
            or decision.desired != runtime.last_recorded_desired
            or decision.source != runtime.last_recorded_source  # e.g. a pin ended: say so at once
        )
        if not changed and now - runtime.last_recorded_at < self.record_unchanged_every_s:
            return False
        runtime.last_recorded_at = now
        runtime.last_recorded_desired = decision.desired
        runtime.last_recorded_source = decision.source
        return True

    # -- recording (pass thread) ---------------------------------------------------------------------------

    def _flush(self) -> list[Outcome]:
        with self._flush_lock:
            return self._flush_locked()

    def _flush_locked(self) -> list[Outcome]:
        with self._done_lock:
            outcomes, self._done = self._done, []
            self._outcomes_ready.clear()
        if not outcomes:
            return []
        for outcome in outcomes:
            self._account(outcome)
        started = time.perf_counter()
        try:
            written = self.recorder.write(outcomes)
            self.metrics.record_duration.observe(time.perf_counter() - started)
        except SQLAlchemyError as error:
            self._database_down(error)
            for outcome in outcomes:  # to be recorded again at the next change or minute
                runtime = self.runtimes.get(outcome.name)
                if runtime is not None and outcome.record:
                    runtime.last_recorded_desired = None
            return [o for o in outcomes if not o.fenced]
        fenced = [o.name for o in outcomes if o.bucket not in written and not o.fenced]
        if fenced:
            logger.warning("lease lost before recording: %d decision(s) not recorded (%s...)",
                           len(fenced), ", ".join(fenced[:3]))  # fmt: skip
        return [o for o in outcomes if not o.fenced]

    def _account(self, outcome: Outcome) -> None:
        runtime = self.runtimes.get(outcome.name)
        if outcome.fenced:
            self.metrics.errors.labels(outcome.name, "lease").inc()
            return
        for stage, message in outcome.errors:
            self.metrics.errors.labels(outcome.name, stage).inc()
            if self._log_due(outcome.name, stage, message, outcome.at):
                log = logger.error if stage != "metrics" else logger.warning
                log("deployment %s: %s error: %s", outcome.name, stage, message,
                    extra={"deployment": outcome.name, "stage": stage})  # fmt: skip
            if runtime is not None:
                runtime.errors_total += 1
                runtime.error_stage, runtime.error_message, runtime.error_at = stage, message, outcome.at
                runtime.history = [*runtime.history[-9:], f"{stage}: {message}"]
        if runtime is not None and not outcome.errors and outcome.decision is not None:
            runtime.error_stage = runtime.error_message = None
        outcome.errors_total = runtime.errors_total if runtime is not None else len(outcome.errors)
        outcome.last_error = (
            (runtime.error_stage, runtime.error_message, runtime.error_at) if runtime is not None else None
        )
        decision = outcome.decision
        if decision is not None:
            self._export(outcome.name, decision, outcome.current, outcome.ready)

    def _log_due(self, name: str, stage: str, message: str, at: float) -> bool:
        """Log an error when it is new for this deployment and stage, and a repeat once a minute (the counter
        counts every one)."""
        key = (name, stage)
        last = self._logged.get(key)
        if last is not None and last[0] == message and at - last[1] < ERROR_LOG_REPEAT_S:
            return False
        self._logged[key] = (message, at)
        return True

    def _drained(
        self,
        runtime: DeploymentRuntime,
        backend: ReplicaBackend,
        policy: ScalingPolicy,
        inputs: Inputs,
        leaving: dict[str, int],
        now: float,
        outcome: Outcome,
    ) -> dict[str, int]:
        """Add spot replicas on draining nodes to those leaving; new ones are recorded as interruptions."""
        notices: list[DrainNotice] = backend.drain_notices()  # type: ignore[attr-defined]
        runtime.drained = {k: v for k, v in runtime.drained.items() if v > now}
        for notice in notices:
            key = (notice.pool, notice.replica)
            if key not in runtime.drained:
                runtime.drained[key] = now + policy.interruption_notice_s
                outcome.interruptions.append(
                    (notice.pool, notice.replica, policy.interruption_notice_s, runtime.drained[key])
                )
                self.metrics.spot_interruptions.labels(runtime.name, notice.pool).inc()
        stored = {(pool, round(leaves, 3)) for pool, _, leaves in inputs.leaving}
        merged = dict(leaving)
        for (pool, _replica), leaves in runtime.drained.items():
            if (pool, round(leaves, 3)) not in stored:  # not yet read back from the store
                merged[pool] = merged.get(pool, 0) + 1
        return merged

    def _export_cost(
        self,
        runtime: DeploymentRuntime,
        policy: ScalingPolicy,
        decision: Decision,
        inputs: Inputs,
        now: float,
    ) -> None:
        """The cost metrics of one deployment (set by its worker: prometheus-client is thread-safe)."""
        name = runtime.name
        counts = (
            decision.placement.scale_counts
            if decision.placement is not None
            else {"on-demand": decision.desired}
        )
        runtime.cost.add(policy, now, counts)
        for pool, rate in money_per_hour(policy, counts).items():
            self.metrics.cost_per_hour.labels(name, pool).set(rate)
            self.metrics.cost_total.labels(name, pool).set(runtime.cost.money.get(pool, 0.0))
        for baseline, ratio in runtime.cost.savings(policy).items():
            self.metrics.cost_saving.labels(name, baseline).set(ratio)
        if policy.budget_money_per_hour is not None:
            self.metrics.budget.labels(name).set(policy.budget_money_per_hour)
        drained = {
            (pool, round(leaves, 3)) for (pool, _), leaves in runtime.drained.items()
        }  # counted when found
        for notice in inputs.leaving:
            if notice not in runtime.notices_seen and (notice[0], round(notice[2], 3)) not in drained:
                runtime.notices_seen.add(notice)
                self.metrics.spot_interruptions.labels(name, notice[0]).inc(notice[1])
        runtime.notices_seen = {n for n in runtime.notices_seen if n[2] > now}

    def _export(self, name: str, decision: Decision, current: int, ready: int) -> None:
        self.metrics.desired.labels(name).set(decision.desired)
        self.metrics.current.labels(name).set(current)
        self.metrics.ready.labels(name).set(ready)
        upper = decision.forecast_upper_rps
        self.metrics.forecast.labels(name).set(float("nan") if upper is None else upper)
        self.metrics.decisions.labels(name, decision.source).inc()

    # -- deployments coming and going ----------------------------------------------------------------------

    def _start_runtimes(self, rows: list[DeploymentRow], now: float) -> None:
        """Runtimes for deployments this controller now owns: their backends, and their scale-down windows rebuilt
        from the stored decisions in one query. They are due at once, except at start-up, where a large fleet's
        first decisions are spread over the default 5 s interval (no thundering herd)."""
        states = self._resume_states([r.id for r in rows], now)
        evidence = self._resume_evidence([r.id for r in rows], now)
        spread_s = min(5.0, len(self._rows) / 200.0) if self._passes == 0 and len(self._rows) > 100 else 0.0
        for row in rows:
            try:
                backend = self.backend_factory(row)
            except (BackendError, OSError, ValueError) as error:
                if self._log_due(row.name, "backend-build", str(error), now):
                    logger.error("deployment %s: cannot build backend %s: %s", row.name, row.backend, error,
                                 extra={"deployment": row.name, "stage": "backend"})  # fmt: skip
                self.metrics.errors.labels(row.name, "backend").inc()
                continue
            runtime = DeploymentRuntime(
                row=row, backend=backend, state=states.get(row.id, DecisionState()), bucket=self.bucket(row.name),
                capacity=evidence.get(row.id) or CapacityEvidence(),
            )  # fmt: skip
            self.runtimes[row.name] = runtime
            self._schedule(runtime, now + (zlib.crc32(row.name.encode()) % 1000) / 1000 * spread_s)

    def _resume_evidence(self, ids: list[int], now: float) -> dict[int, CapacityEvidence]:
        """The capacity evidence the previous owner stored with each deployment's status (one query)."""
        try:
            with self.sessions() as session:
                rows = session.execute(
                    select(DeploymentStatus.deployment_id, DeploymentStatus.capacity).where(
                        among(session, DeploymentStatus.deployment_id, ids)
                    )
                ).all()
        except SQLAlchemyError:
            return {}
        found: dict[int, CapacityEvidence] = {}
        for deployment_id, stored in rows:
            inputs = self.inputs.get(deployment_id, now)
            half_life = inputs.policy.capacity_half_life_s if isinstance(inputs, Inputs) else 86_400.0
            found[deployment_id] = CapacityEvidence.from_json((stored or {}).get("evidence"), half_life)
        return found

    def _resume_states(self, ids: list[int], now: float) -> dict[int, DecisionState]:
        """Each deployment's stabilisation window rebuilt from its stored decisions (conservative: their desired
        counts), for all of ``ids`` in one query."""
        try:
            self.inputs.refresh(ids, now)
            windows = {
                d: i.policy.scale_down_stabilisation_s if isinstance(i, Inputs) else 0.0
                for d in ids
                if (i := self.inputs.get(d, now)) is not None
            }
            longest = max(windows.values(), default=0.0)
            if longest <= 0:
                return {}
            with self.sessions() as session:
                rows = session.execute(
                    select(ScalingDecision.deployment_id, ScalingDecision.ts, ScalingDecision.desired)
                    .where(
                        among(session, ScalingDecision.deployment_id, windows),
                        ScalingDecision.ts >= datetime.fromtimestamp(now - longest, UTC),
                    )
                    .order_by(ScalingDecision.ts)
                ).all()
        except SQLAlchemyError:
            return {}
        kept: dict[int, list[tuple[float, int]]] = {}
        for deployment_id, ts, desired in rows:
            at = ts.timestamp()
            if at >= now - windows.get(deployment_id, 0.0):
                kept.setdefault(deployment_id, []).append((at, desired))
        return {d: DecisionState(recommendations=tuple(history)) for d, history in kept.items()}

    def _release(self, name: str, why: str) -> None:
        runtime = self.runtimes.get(name)
        if runtime is None or runtime.busy:
            return
        logger.info("deployment %s: %s, releasing its backend", name, why)
        self.runtimes.pop(name)
        self.inputs.forget(runtime.row.id)
        forget = getattr(self.source, "forget", None)
        if forget is not None:
            forget(name)
        self.metrics.forget(name)
        try:
            runtime.backend.close()
        except Exception:
            logger.exception("deployment %s: closing its backend failed", name)

    def _database_down(self, error: Exception) -> None:
        if self.database_ok:
            logger.error("database unreachable, keeping current replica counts until it returns: %s", error)
        self.database_ok = False
        self.metrics.errors.labels("", "database").inc()

    def _database_up(self) -> None:
        if not self.database_ok:
            logger.info("database reachable again, reconciling resumes")
        self.database_ok = True

    # -- running -------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, tick_s: float = 0.1) -> None:
        """Pass every ``tick_s`` until ``stop`` is set; each pass runs in a thread (the API never waits on it),
        and a recorder thread writes finished outcomes as they come."""
        self._recording_in_background = True
        recorder_stop = threading.Event()
        recorder = threading.Thread(target=self._record_until, args=(recorder_stop,), name="recorder", daemon=True)
        recorder.start()
        try:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self.pass_once)
                except Exception:  # a bug in a pass must not end the loop: log it and go on
                    logger.exception("reconcile pass failed")
                await asyncio.to_thread(self._wait_tick, stop, tick_s)
        finally:
            recorder_stop.set()
            self._outcomes_ready.set()
            await asyncio.to_thread(recorder.join, 10)
            self._recording_in_background = False

    def _wait_tick(self, stop: asyncio.Event, tick_s: float) -> None:
        """Sleep one tick, cut short by an activation (``activate``); ``stop`` is checked by the caller."""
        deadline = time.monotonic() + tick_s
        while not stop.is_set() and not self._wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wake.wait(min(remaining, 0.05))
        self._wake.clear()

    def _record_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._outcomes_ready.wait(1.0)
            try:
                self._flush()
            except Exception:
                logger.exception("recording decisions failed")
            stop.wait(RECORD_EVERY_S)  # gather a batch

    def close(self) -> None:
        """Wait briefly for running reconciles, record them, and release every backend (local replicas stop)."""
        self._pool.shutdown()
        with contextlib.suppress(SQLAlchemyError):
            self._flush()
        for runtime in list(self.runtimes.values()):
            runtime.busy = False
            self._release(runtime.name, "controller stopping")

    def status(self, name: str) -> dict[str, Any] | None:
        """Live view of one deployment for the API (None when this controller does not own it)."""
        runtime = self.runtimes.get(name)
        if runtime is None:
            return None
        decision = runtime.last_decision
        return {
            "current_replicas": runtime.current,
            "ready_replicas": runtime.ready,
            "desired_replicas": decision.desired if decision else None,
            "source": decision.source if decision else None,
            "reasons": decision.reason_texts if decision else [],
            "forecast_upper_rps": decision.forecast_upper_rps if decision else None,
            "planned_utilisation": decision.planned_utilisation if decision else None,
            "idle_since": decision.idle_since if decision else None,
            "next_wake_at": decision.next_wake_at if decision else None,
            "owner": self.identity,
            "decided_at": runtime.decided_at,
            "error": (
                {"stage": runtime.error_stage, "message": runtime.error_message, "at": runtime.error_at}
                if runtime.error_stage
                else None
            ),
            "errors_total": runtime.errors_total,
            "held_requests": runtime.held_now(time.time()),
            "capacity": capacity_json(runtime.capacity, runtime.learned, decision, None, with_evidence=False),
        }


def observations_from_window(
    window: ObservationWindow,
    current: int,
    ready: int,
    replica_startup_s: float | None,
    overrides: tuple[Any, ...],
) -> Observations:
    """Turn a metrics window into ``decide()``'s observations (the newest finite sample of any metric dates them)."""
    measured = np.zeros(window.timestamps.shape, dtype=bool)
    for values in window.values.values():
        measured |= np.isfinite(values)
    seconds = np.flatnonzero(measured)
    last_sample_ts = float(window.timestamps[seconds[-1]]) if seconds.size else None
    return Observations(
        current_replicas=current,
        ready_replicas=ready,
        rps=window.get(m.REQUESTS_RPS),
        latency_p95_ms=window.get(m.LATENCY_P95_MS),
        cpu_percent=window.get(m.CPU_PERCENT),
        memory_percent=window.get(m.MEMORY_PERCENT),
        queue_length=window.get(m.QUEUE_LENGTH),
        last_sample_ts=last_sample_ts,
        replica_startup_s=replica_startup_s,
        overrides=overrides,
    )


def learn_capacity(
    evidence: CapacityEvidence, window: ObservationWindow, ready: int, policy: ScalingPolicy
) -> LearnedCapacity | None:
    """Feed a window's seconds to the deployment's capacity evidence (ready replicas as the gateway measured them
    each second, else the current count); the estimate after."""
    ready_series = window.get(m.READY_REPLICAS)
    return learn(
        evidence, window.timestamps, window.get(m.REQUESTS_RPS),
        np.where(np.isfinite(ready_series), ready_series, float(ready)),
        window.get(m.LATENCY_P95_MS), window.get(m.QUEUE_LENGTH), window.get(m.CPU_PERCENT), window.get(m.SERVED_RPS),
        slo_p95_ms=policy.capacity_latency_slo_ms, cpu_saturation_percent=policy.capacity_cpu_saturation_percent,
        half_life_s=policy.capacity_half_life_s,
    )  # fmt: skip


def capacity_json(
    evidence: CapacityEvidence,
    learned: LearnedCapacity | None,
    decision: Decision | None,
    policy: ScalingPolicy | None,
    *,
    with_evidence: bool = True,
) -> dict[str, Any]:
    """The learned capacity as the status shows it (and, for the store, the evidence to resume from)."""
    shown: dict[str, Any] = {
        "in_use_rps": decision.capacity_rps if decision is not None else None,
        "estimate": dataclasses.asdict(learned) if learned is not None else None,
    }
    if policy is not None:
        shown["mode"] = policy.capacity_mode
    if with_evidence:
        shown["evidence"] = evidence.to_json()
    return shown
