"""What the loop reads from the store for the deployments due in a pass, in a few queries for all of them.

Per deployment ``decide()`` needs the current policy, the overrides in force, the newest forecast and the measured
replica startup. Reading them one deployment at a time costs about a dozen queries each; here one pass reads them
for every due deployment together and keeps what rarely changes in memory: a policy is parsed again only when its
version changes, a forecast's points are loaded once per run, startup medians are refreshed every
``startup_ttl_s``. A stored policy that no longer validates is that deployment's error alone.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pydantic
from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from controller.decision_values import ForecastInput
from controller.overrides import OverrideKind, OverrideValue
from controller.policy import ScalingPolicy
from controller.repository import effective_end
from prewarm.db.engine import among
from prewarm.db.models import (
    Deployment,
    ForecastPoint,
    ForecastRun,
    Override,
    Policy,
    ReplicaEvent,
    SpotInterruption,
)

RECENT_STARTUPS = 20  # the startup estimate is the median of this many newest measurements


@dataclass(frozen=True)
class DeploymentRow:
    """A deployment as the loop needs it (a plain value: safe to hand to worker threads)."""

    id: int
    name: str
    model: str
    backend: str
    backend_config: dict[str, Any]
    min_replicas: int

    @property
    def backend_key(self) -> str:
        """Changes when the backend must be rebuilt."""
        return f"{self.backend}:{sorted(self.backend_config.items())}:{self.model}"


@dataclass(frozen=True)
class Inputs:
    """Everything ``decide()`` takes from the store for one deployment."""

    policy_version: int
    policy: ScalingPolicy
    overrides: tuple[OverrideValue, ...]
    forecast: ForecastInput | None
    startup_s: float | None
    leaving: tuple[tuple[str, int, float], ...] = ()  # (pool, replicas, leaves at) of interruption notices

    def leaving_at(self, now: float) -> dict[str, int]:
        """Replicas per pool under a notice that have not left yet at ``now``."""
        out: dict[str, int] = defaultdict(int)
        for pool, count, leaves_at in self.leaving:
            if leaves_at > now:
                out[pool] += count
        return dict(out)


class InputError(Exception):
    """One deployment's inputs could not be used (``stage`` says which: ``policy``)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def read_deployments(session: Session) -> list[DeploymentRow]:
    rows = session.execute(
        select(
            Deployment.id, Deployment.name, Deployment.model, Deployment.backend, Deployment.backend_config,
            Deployment.min_replicas,
        ).order_by(Deployment.name)
    ).all()  # fmt: skip
    return [DeploymentRow(i, n, m, b, dict(c or {}), lo) for i, n, m, b, c, lo in rows]


def deployments_mark(session: Session) -> tuple[object, ...]:
    """A cheap mark of the deployment list that changes when a deployment is created, deleted or re-created
    (count, id sum, newest id, newest creation): the loop reads the whole list again only when it changes."""
    row = session.execute(
        select(func.count(), func.sum(Deployment.id), func.max(Deployment.id), func.max(Deployment.created_at))
    ).one()
    return tuple(row)


class InputReader:
    """``Inputs`` for many deployments, from caches that ``refresh`` brings up to date in a few bulk queries (the
    loop calls it about once a second for every deployment it owns). Not thread-safe: the loop's pass thread is
    its only caller."""

    def __init__(self, sessions: sessionmaker[Session], startup_ttl_s: float = 30.0) -> None:
        self.sessions = sessions
        self.startup_ttl_s = startup_ttl_s
        self._policies: dict[int, tuple[int, ScalingPolicy | InputError]] = {}
        self._overrides: dict[int, list[OverrideValue]] = {}
        self._forecasts: dict[int, tuple[tuple[float, int], ForecastInput | None]] = {}  # (created, run id)
        self._startups: dict[int, tuple[float, float | None]] = {}
        self._leaving: dict[int, list[tuple[str, int, float]]] = {}
        self._newest_run_id = 0
        self._known: set[int] = set()

    def forget(self, deployment_id: int) -> None:
        for cache in (self._policies, self._overrides, self._forecasts, self._startups, self._leaving):
            cache.pop(deployment_id, None)
        self._known.discard(deployment_id)

    def refresh(self, ids: Sequence[int], now: float) -> None:
        """Bring the caches of ``ids`` up to date. Raises SQLAlchemyError when the store is unreachable."""
        if not ids:
            return
        with self.sessions() as session:
            self._refresh_policies(session, ids)
            overrides = self._active_overrides(session, ids, now)
            for deployment_id in ids:  # a refresh of some deployments keeps the others' overrides
                self._overrides[deployment_id] = overrides.get(deployment_id, [])
            self._refresh_forecasts(session, ids)
            self._refresh_startups(session, ids, now)
            leaving = self._pending_interruptions(session, ids, now)
            for deployment_id in ids:
                self._leaving[deployment_id] = leaving.get(deployment_id, [])
        self._known.update(ids)

    def known(self, deployment_id: int) -> bool:
        return deployment_id in self._known

    def get(self, deployment_id: int, now: float) -> Inputs | InputError | None:
        """The inputs of one deployment at ``now`` from the caches (None: no policy, e.g. deleted meanwhile)."""
        cached = self._policies.get(deployment_id)
        if cached is None:
            return None
        version, policy = cached
        if isinstance(policy, InputError):
            return policy
        overrides = tuple(
            o for o in self._overrides.get(deployment_id, ()) if o.starts_at <= now < o.ends_at
        )
        return Inputs(
            policy_version=version,
            policy=policy,
            overrides=overrides,
            forecast=self._forecasts.get(deployment_id, ((0.0, 0), None))[1],
            startup_s=self._startups.get(deployment_id, (0.0, None))[1],
            leaving=tuple(self._leaving.get(deployment_id, ())),
        )

    def read(self, ids: Sequence[int], now: float) -> dict[int, Inputs | InputError]:
        """Refresh and get in one call (tests and one-off callers)."""
        self.refresh(ids, now)
        found = {d: self.get(d, now) for d in ids}
        return {d: i for d, i in found.items() if i is not None}

    def _refresh_policies(self, session: Session, ids: Sequence[int]) -> None:
        versions = dict(
            session.execute(
                select(Policy.deployment_id, func.max(Policy.version))
                .where(among(session, Policy.deployment_id, ids))
                .group_by(Policy.deployment_id)
            ).all()
        )
        stale = [(d, v) for d, v in versions.items() if self._policies.get(d, (None,))[0] != v]
        if not stale:
            return
        rows = session.execute(
            select(Policy.deployment_id, Policy.version, Policy.spec).where(
                tuple_(Policy.deployment_id, Policy.version).in_(stale)
            )
        ).all()
        for deployment_id, version, spec in rows:
            try:
                parsed: ScalingPolicy | InputError = ScalingPolicy.model_validate(spec)
            except pydantic.ValidationError as error:
                first = error.errors(include_url=False)[0]
                where = ".".join(str(part) for part in first["loc"]) or "policy"
                parsed = InputError(
                    "policy",
                    f"stored policy version {version} is invalid ({error.error_count()} error(s); "
                    f"{where}: {first['msg']}); set a valid policy through the API",
                )
            self._policies[deployment_id] = (version, parsed)

    def _active_overrides(
        self, session: Session, ids: Sequence[int], now: float
    ) -> dict[int, list[OverrideValue]]:
        """Overrides in force now or later (``get`` keeps those in force at the decision's time)."""
        moment = datetime.fromtimestamp(now, UTC)
        rows = session.scalars(
            select(Override).where(
                among(session, Override.deployment_id, ids),
                Override.ends_at > moment,
                or_(Override.ended_at.is_(None), Override.ended_at > moment),
            ).order_by(Override.starts_at.desc(), Override.id.desc())
        ).all()
        found: dict[int, list[OverrideValue]] = defaultdict(list)
        for row in rows:
            found[row.deployment_id].append(
                OverrideValue(
                    kind=OverrideKind(row.kind),
                    starts_at=row.starts_at.timestamp(),
                    ends_at=effective_end(row).timestamp(),
                    value=row.value,
                    reason=row.reason,
                )
            )
        return found

    def _pending_interruptions(
        self, session: Session, ids: Sequence[int], now: float
    ) -> dict[int, list[tuple[str, int, float]]]:
        """Interruption notices whose replicas have not left yet."""
        rows = session.execute(
            select(
                SpotInterruption.deployment_id, SpotInterruption.pool, SpotInterruption.count,
                SpotInterruption.leaves_at,
            ).where(
                among(session, SpotInterruption.deployment_id, ids),
                SpotInterruption.leaves_at > datetime.fromtimestamp(now, UTC),
            )
        ).all()  # fmt: skip
        found: dict[int, list[tuple[str, int, float]]] = defaultdict(list)
        for deployment_id, pool, count, leaves_at in rows:
            found[deployment_id].append((pool, int(count), leaves_at.timestamp()))
        return found

    def _refresh_forecasts(self, session: Session, ids: Sequence[int]) -> None:
        """New runs since the newest seen (ids grow), plus the newest run of deployments not seen before."""
        newest: dict[int, tuple[float, int]] = {}  # deployment -> (created, run id) of its newest run found

        def offer(deployment_id: int, run_id: int, created: datetime) -> None:
            key = (created.timestamp(), run_id)
            if key > newest.get(deployment_id, (-math.inf, 0)):
                newest[deployment_id] = key

        for run_id, deployment_id, created in session.execute(
            select(ForecastRun.id, ForecastRun.deployment_id, ForecastRun.created_at).where(
                ForecastRun.id > self._newest_run_id
            )
        ):
            self._newest_run_id = max(self._newest_run_id, run_id)
            offer(deployment_id, run_id, created)
        unseen = [d for d in ids if d not in self._known and d not in self._forecasts]
        if unseen:
            latest = (
                select(ForecastRun.deployment_id, func.max(ForecastRun.created_at).label("created_at"))
                .where(among(session, ForecastRun.deployment_id, unseen))
                .group_by(ForecastRun.deployment_id)
                .subquery()
            )
            on_latest = and_(
                ForecastRun.deployment_id == latest.c.deployment_id, ForecastRun.created_at == latest.c.created_at
            )
            for run_id, deployment_id, created in session.execute(
                select(ForecastRun.id, ForecastRun.deployment_id, ForecastRun.created_at).join(latest, on_latest)
            ):
                offer(deployment_id, run_id, created)
        wanted = set(ids)
        changed = {
            d: key[1]
            for d, key in newest.items()
            if d in wanted and key > self._forecasts.get(d, ((-math.inf, 0), None))[0]
        }
        if not changed:
            return
        runs = {r.id: r for r in session.scalars(select(ForecastRun).where(among(session, ForecastRun.id, changed.values())))}
        points: dict[int, list[ForecastPoint]] = defaultdict(list)
        for point in session.scalars(
            select(ForecastPoint)
            .where(among(session, ForecastPoint.run_id, changed.values()))
            .order_by(ForecastPoint.run_id, ForecastPoint.target_ts)
        ):
            points[point.run_id].append(point)
        for deployment_id, run_id in changed.items():
            run = runs.get(run_id)
            if run is not None:
                key = (run.created_at.timestamp(), run_id)
                self._forecasts[deployment_id] = (key, stored_forecast_input(run, points[run_id]))

    def _refresh_startups(self, session: Session, ids: Sequence[int], now: float) -> None:
        stale = [d for d in ids if now - self._startups.get(d, (-1e18, None))[0] >= self.startup_ttl_s]
        if not stale:
            return
        ranked = (
            select(
                ReplicaEvent.deployment_id,
                ReplicaEvent.duration_s,
                func.row_number()
                .over(
                    partition_by=ReplicaEvent.deployment_id,
                    order_by=(ReplicaEvent.ts.desc(), ReplicaEvent.id.desc()),
                )
                .label("rank"),
            )
            .where(
                among(session, ReplicaEvent.deployment_id, stale),
                ReplicaEvent.event == "ready",
                ReplicaEvent.duration_s.is_not(None),
            )
            .subquery()
        )
        durations: dict[int, list[float]] = defaultdict(list)
        for deployment_id, duration in session.execute(
            select(ranked.c.deployment_id, ranked.c.duration_s).where(ranked.c.rank <= RECENT_STARTUPS)
        ):
            durations[deployment_id].append(float(duration))
        for deployment_id in stale:
            values = durations.get(deployment_id)
            self._startups[deployment_id] = (now, statistics.median(values) if values else None)


def stored_forecast_input(run: ForecastRun, points: Sequence[ForecastPoint]) -> ForecastInput | None:
    """A stored forecast run and its points as ``decide()`` takes them (None when it has no points)."""
    if not points:
        return None
    detail = run.detail or {}
    peak = detail.get("history_peak_rps")
    points_seen = detail.get("history_points")
    return ForecastInput(
        created_at=run.created_at.timestamp(),
        target_ts=np.array([p.target_ts.timestamp() for p in points]),
        upper=np.array([p.upper for p in points]),
        point=np.array([p.point for p in points]),
        lower=np.array([p.lower for p in points]),
        step_s=run.step_s,
        model=run.model_name,
        history_peak_rps=float(peak) if peak is not None else None,
        history_s=float(points_seen) * run.step_s if points_seen is not None else None,
    )
