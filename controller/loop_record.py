"""Recording what the loop's workers decided: decisions and each deployment's live status, in one transaction per
pass, fenced by the lease terms the work was dispatched under (a controller that lost a bucket writes nothing for
it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controller.decide import Decision
from controller.leases import fence_check
from prewarm.db.engine import among
from prewarm.db.models import Deployment, DeploymentStatus, ScalingDecision, SpotInterruption

MAX_MESSAGE = 2000
STATUS_REFRESH_S = 15.0  # an unchanged status row is rewritten this often (the fleet view flags older than 60 s)


@dataclass
class Outcome:
    """What one reconcile of one deployment produced (filled in by a worker, then by the pass thread)."""

    name: str
    deployment_id: int
    bucket: int
    term: int
    at: float  # epoch seconds the reconcile began
    current: int = 0
    ready: int = 0
    decision: Decision | None = None
    policy_version: int | None = None
    applied: bool = False
    record: bool = False  # append the decision to the log (changes, and once a minute otherwise)
    fenced: bool = False  # the lease was lost before the work was done: nothing to record
    errors: list[tuple[str, str]] = field(default_factory=list)  # (stage, message)
    errors_total: int = 0
    last_error: tuple[str | None, str | None, float | None] | None = None
    capacity: dict[str, Any] | None = None  # learned capacity (estimate and evidence), stored with the status
    # (pool, pod, notice s, leaves at epoch s) of spot pods on draining nodes
    interruptions: list[tuple[str, str, float, float]] = field(default_factory=list)

    def fail(self, stage: str, message: str) -> None:
        self.errors.append((stage, message[:MAX_MESSAGE]))

    warn = fail  # a degraded input (e.g. the metrics source) is an error of its stage too


class Recorder:
    """Writes outcomes; ``write`` returns the (bucket, term) pairs that were still held and so written."""

    def __init__(self, engine: Engine, identity: str, fenced: bool = True) -> None:
        self.engine = engine
        self.identity = identity
        self.fenced = fenced
        self.postgres = engine.dialect.name == "postgresql"
        self._written: dict[int, tuple[tuple[Any, ...], float]] = {}  # deployment -> (status values, when)
        self._upserts: dict[tuple[str, ...], Any] = {}

    def write(self, outcomes: list[Outcome]) -> set[int]:
        live = [o for o in outcomes if not o.fenced]
        if not live:
            return set()
        with self.engine.begin() as connection:
            if self.fenced:
                held = fence_check(connection, self.identity, {o.bucket: o.term for o in live})
                live = [o for o in live if o.bucket in held and held[o.bucket] == o.term]
            existing = set(
                connection.scalars(
                    select(Deployment.id).where(among(connection, Deployment.id, {o.deployment_id for o in live}))
                )
            )
            live = [o for o in live if o.deployment_id in existing]  # deleted meanwhile
            self._decisions(connection, [o for o in live if o.record and o.decision is not None])
            self._interruptions(connection, [o for o in live if o.interruptions])
            self._statuses(connection, live)
        return {o.bucket for o in live}

    def _interruptions(self, connection: Connection, outcomes: list[Outcome]) -> None:
        """Spot replicas on draining nodes the workers found, as interruption notices."""
        rows = [
            {
                "deployment_id": o.deployment_id,
                "ts": datetime.fromtimestamp(leaves_at - notice_s, UTC),
                "pool": pool,
                "replica": pod[:253],
                "count": 1,
                "notice_s": notice_s,
                "leaves_at": datetime.fromtimestamp(leaves_at, UTC),
                "source": "kubernetes-drain",
            }
            for o in outcomes
            for pool, pod, notice_s, leaves_at in o.interruptions
        ]
        if rows:
            connection.execute(insert(SpotInterruption), rows)

    def _decisions(self, connection: Connection, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        rows = []
        for o in outcomes:
            assert o.decision is not None
            rows.append(
                {
                    "deployment_id": o.deployment_id,
                    "ts": datetime.fromtimestamp(o.at, UTC),
                    "current": o.current,
                    "desired": o.decision.desired,
                    "applied": o.applied,
                    "source": o.decision.source,
                    "reasons": o.decision.reason_texts,
                    "placement": o.decision.placement.as_json() if o.decision.placement is not None else None,
                    "policy_version": o.policy_version,
                    "controller": self.identity,
                    "term": o.term,
                }
            )
        connection.execute(insert(ScalingDecision), rows)

    def _statuses(self, connection: Connection, outcomes: list[Outcome]) -> None:
        latest: dict[int, dict[str, Any]] = {}
        for o in outcomes:  # the newest outcome of a deployment wins
            row: dict[str, Any] = {
                "deployment_id": o.deployment_id,
                "updated_at": datetime.fromtimestamp(o.at, UTC),
                "controller": self.identity,
                "term": o.term,
                "errors_total": o.errors_total,
            }
            if o.decision is not None:
                decision = o.decision
                row.update(
                    current_replicas=o.current,
                    ready_replicas=o.ready,
                    desired_replicas=decision.desired,
                    source=decision.source,
                    reason=_deciding_reason(decision)[:MAX_MESSAGE],
                    forecast_used=decision.forecast_upper_rps is not None,
                    forecast_upper_rps=decision.forecast_upper_rps,
                    planned_utilisation=decision.planned_utilisation,
                    decided_at=datetime.fromtimestamp(o.at, UTC),
                    idle_since=_when(decision.idle_since),
                    next_wake_at=_when(decision.next_wake_at),
                )
            if o.capacity is not None:
                row["capacity"] = o.capacity
            stage, message, at = o.last_error or (None, None, None)
            row.update(
                error_stage=stage,
                error_message=message,
                error_at=datetime.fromtimestamp(at, UTC) if at is not None else None,
            )
            latest[o.deployment_id] = row
        for deployment_id, row in list(latest.items()):
            # An unchanged status is written again only every STATUS_REFRESH_S (its age says "still decided").
            values = tuple(
                v for k, v in sorted(row.items()) if k not in ("updated_at", "decided_at", "capacity", "idle_since")
            )
            at = row["updated_at"].timestamp()
            previous = self._written.get(deployment_id)
            if previous is not None and previous[0] == values and at - previous[1] < STATUS_REFRESH_S:
                del latest[deployment_id]
            else:
                self._written[deployment_id] = (values, at)
        if not latest:
            return
        # Rows with and without a decision carry different columns: write each shape on its own, as one cached
        # statement executed for many rows (compiling a statement with the rows' values in it costs more).
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in latest.values():
            shapes.setdefault(tuple(sorted(row)), []).append(row)
        for columns, rows in shapes.items():
            connection.execute(self._upsert(columns), rows)

    def _upsert(self, columns: tuple[str, ...]) -> Any:
        statement = self._upserts.get(columns)
        if statement is None:
            insert_ = (pg_insert if self.postgres else sqlite_insert)(DeploymentStatus)
            updated = {c: insert_.excluded[c] for c in columns if c != "deployment_id"}
            statement = self._upserts[columns] = insert_.on_conflict_do_update(
                index_elements=["deployment_id"], set_=updated
            )
        return statement


def _deciding_reason(decision: Decision) -> str:
    """The reason of the step that set the count (the last one that changed it, else the combine step)."""
    for reason in reversed(decision.reasons):
        if reason.step == decision.source or (reason.after == decision.desired and reason.before is not None):
            return str(reason)
    for reason in decision.reasons:
        if reason.step == "combine":
            return str(reason)
    return str(decision.reasons[-1]) if decision.reasons else ""


def _when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None
