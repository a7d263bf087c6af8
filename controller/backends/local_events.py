"""Replica life events (started, ready, failed, stopped) written to the ``replica_events`` table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine, select

from prewarm.db.engine import session_factory
from prewarm.db.models import Deployment, ReplicaEvent

log = logging.getLogger(__name__)

STARTED = "started"
READY = "ready"
FAILED = "failed"
STOPPED = "stopped"
ADOPTED = "adopted"
PARKED = "parked"  # a warm-pool replica is ready and parked (not serving)
JOINED = "joined"  # a parked replica joined the serving set (duration: seconds it was parked)


@dataclass(frozen=True)
class Event:
    replica_id: str
    event: str
    duration_s: float | None = None  # for "ready": the replica's startup seconds
    detail: str = ""


class EventSink(Protocol):
    def record(self, event: Event) -> None: ...


class LogEventSink:
    """Events only in the log (no database)."""

    def record(self, event: Event) -> None:
        log.info("replica %s %s %s %s", event.replica_id, event.event, event.duration_s or "", event.detail)


class StoreEventSink:
    """Writes each event as a row; a database failure is logged, never raised into the supervisor."""

    def __init__(self, engine: Engine, deployment: str) -> None:
        self._sessions = session_factory(engine)
        self._deployment = deployment
        self._deployment_id: int | None = None

    def _resolve(self) -> int | None:
        if self._deployment_id is None:
            with self._sessions() as session:
                self._deployment_id = session.scalar(
                    select(Deployment.id).where(Deployment.name == self._deployment)
                )
            if self._deployment_id is None:
                log.warning(
                    "deployment %r is not in the store: replica events are only logged", self._deployment
                )
        return self._deployment_id

    def record(self, event: Event) -> None:
        LogEventSink().record(event)
        try:
            deployment_id = self._resolve()
            if deployment_id is None:
                return
            with self._sessions.begin() as session:
                session.add(
                    ReplicaEvent(
                        deployment_id=deployment_id, replica=event.replica_id, event=event.event,
                        duration_s=event.duration_s, detail=event.detail[:2000],
                    )
                )  # fmt: skip
        except Exception:
            log.exception("could not record replica event %s", event)
