"""Bounded storage: per-second samples rolled up into per-minute aggregates, then every table expired on its own
schedule.

Store-wide jobs done in chunks, each one short transaction, so no statement holds locks for long:

- **rollup**: the samples of each finished minute become one ``metric_rollups`` row per (deployment, metric) with
  their mean, max and count. Whichever controller locks the job's progress row (``FOR UPDATE SKIP LOCKED``) does the
  next chunk: several controllers never do the same work and none needs to be the leader. The last few minutes are
  rolled up again each time, so samples that arrive a little late are counted.
- **expiry**: samples older than their retention *and* already rolled up, rollups, forecast runs (the newest of
  each deployment is kept), decisions and replica events, deleted ``batch_rows`` at a time through the time
  indexes. One controller per interval claims the job.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from prewarm.db.models import MaintenanceProgress

if TYPE_CHECKING:
    from prewarm.settings import Settings

logger = logging.getLogger(__name__)

ROLLUP = "rollup"
EXPIRY = "expiry"
MINUTE_S = 60


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row lives (seconds), and how the work is cut into pieces."""

    samples_s: float = 2 * 86400.0
    rollups_s: float = 35 * 86400.0
    forecasts_s: float = 7 * 86400.0
    decisions_s: float = 30 * 86400.0
    batch_rows: int = 5000
    rollup_delay_s: float = 120.0  # a minute is rolled up this long after it ends
    reroll_s: float = 180.0  # and rolled up again for this long after (late samples)
    rollup_chunk_s: float = 3600.0  # at most this much time per rollup statement
    expiry_every_s: float = 60.0
    time_budget_s: float = 20.0  # a run stops after this long and goes on next time

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            samples_s=settings.retention_samples_s,
            rollups_s=settings.retention_rollups_s,
            forecasts_s=settings.retention_forecasts_s,
            decisions_s=settings.retention_decisions_s,
            batch_rows=settings.maintenance_batch_rows,
            expiry_every_s=settings.maintenance_interval_s,
        )


@dataclass
class MaintenanceReport:
    rolled_up_minutes: int = 0
    rollup_rows: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Maintenance:
    """Rollup and expiry for one store; ``run_once()`` does what is due (call it every minute or so)."""

    def __init__(
        self, engine: Engine, policy: RetentionPolicy | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.policy = policy or RetentionPolicy()
        self.clock = clock
        self.postgres = engine.dialect.name == "postgresql"

    def run_once(self, now: float | None = None) -> MaintenanceReport:
        now = self.clock() if now is None else now
        started = time.monotonic()
        report = MaintenanceReport()
        deadline = started + self.policy.time_budget_s
        while time.monotonic() < deadline:
            minutes, rows = self.rollup_chunk(now)
            report.rolled_up_minutes += minutes
            report.rollup_rows += rows
            if minutes == 0:
                break
        report.deleted = self.expire(now, deadline)
        report.seconds = time.monotonic() - started
        if report.rollup_rows or any(report.deleted.values()):
            logger.info(
                "maintenance: rolled up %d minutes (%d rows), deleted %s in %.2f s",
                report.rolled_up_minutes, report.rollup_rows,
                ", ".join(f"{n} {t}" for t, n in report.deleted.items() if n) or "nothing", report.seconds,
            )  # fmt: skip
        return report

    # -- rollup --------------------------------------------------------------------------------------------

    def rolled_up_until(self) -> datetime | None:
        """Samples before this instant are in the rollups (None: nothing rolled up yet)."""
        with self.engine.connect() as connection:
            return rolled_up_until(connection)

    def rollup_chunk(self, now: float) -> tuple[int, int]:
        """Roll up the next chunk of finished minutes; returns (new minutes, rows written), (0, 0) when caught up
        or another controller holds the job."""
        target = _floor_minute(now - self.policy.rollup_delay_s)
        with self.engine.begin() as connection:
            done = self._claim(connection, ROLLUP, initial=lambda: self._first_minute(connection, target))
            if done is None:
                return 0, 0
            done_s = done.timestamp()
            if target <= done_s:
                return 0, 0
            end_s = min(target, done_s + self.policy.rollup_chunk_s)
            start_s = max(0.0, done_s - self.policy.reroll_s)
            rows = self._rollup(connection, _dt(start_s), _dt(end_s))
            connection.execute(
                update(MaintenanceProgress).where(MaintenanceProgress.job == ROLLUP).values(done_until=_dt(end_s))
            )
        return round((end_s - done_s) / MINUTE_S), rows

    def _first_minute(self, connection: Connection, target: float) -> datetime:
        oldest = connection.execute(text("SELECT min(ts) FROM metric_samples")).scalar()
        if oldest is None:
            return _dt(target)
        if isinstance(oldest, str):  # SQLite hands back its text
            oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
        return _dt(_floor_minute(oldest.timestamp()))

    def _rollup(self, connection: Connection, start: datetime, end: datetime) -> int:
        if self.postgres:
            statement = text(
                "INSERT INTO metric_rollups (deployment_id, metric, ts, mean, max, count) "
                "SELECT deployment_id, metric, to_timestamp(floor(extract(epoch FROM ts) / 60) * 60) AS minute, "
                "avg(value), max(value), count(*) FROM metric_samples WHERE ts >= :start AND ts < :end "
                "GROUP BY deployment_id, metric, minute "
                "ON CONFLICT (deployment_id, metric, ts) DO UPDATE "
                "SET mean = EXCLUDED.mean, max = EXCLUDED.max, count = EXCLUDED.count"
            )
            params: dict[str, object] = {"start": start, "end": end}
        else:
            statement = text(
                "INSERT INTO metric_rollups (deployment_id, metric, ts, mean, max, count) "
                "SELECT deployment_id, metric, substr(ts, 1, 16) || '\\:00.000000' AS minute, "
                "avg(value), max(value), count(*) FROM metric_samples WHERE ts >= :start AND ts < :end "
                "GROUP BY deployment_id, metric, minute "
                "ON CONFLICT (deployment_id, metric, ts) DO UPDATE "
                "SET mean = excluded.mean, max = excluded.max, count = excluded.count"
            )
            params = {"start": _sqlite_ts(start), "end": _sqlite_ts(end)}
        return int(connection.execute(statement, params).rowcount or 0)

    # -- expiry --------------------------------------------------------------------------------------------

    def expire(self, now: float, deadline: float | None = None) -> dict[str, int]:
        """Delete what is past its retention (only samples already rolled up); {} when another controller did
        this interval's run."""
        with self.engine.begin() as connection:
            claimed = self._claim_interval(connection, EXPIRY, now, self.policy.expiry_every_s)
            rolled = rolled_up_until(connection)
        if not claimed:
            return {}
        policy = self.policy
        sample_cutoff = now - policy.samples_s
        sample_cutoff = min(sample_cutoff, rolled.timestamp()) if rolled is not None else -math.inf
        deadline = deadline if deadline is not None else time.monotonic() + policy.time_budget_s
        deleted: dict[str, int] = {}
        jobs = [
            ("metric_samples", "ts < :cutoff", sample_cutoff),
            ("metric_rollups", "ts < :cutoff", now - policy.rollups_s),
            (
                "forecast_runs",
                "created_at < :cutoff AND EXISTS (SELECT 1 FROM forecast_runs newer WHERE newer.deployment_id = "
                "forecast_runs.deployment_id AND newer.created_at > forecast_runs.created_at)",
                now - policy.forecasts_s,
            ),
            ("scaling_decisions", "ts < :cutoff", now - policy.decisions_s),
            ("replica_events", "ts < :cutoff", now - policy.decisions_s),
            ("spot_interruptions", "ts < :cutoff", now - policy.decisions_s),
        ]
        for table, condition, cutoff in jobs:
            if not math.isfinite(cutoff):
                continue
            deleted[table] = self._delete_in_batches(table, condition, _dt(cutoff), deadline)
        return deleted

    def _delete_in_batches(self, table: str, condition: str, cutoff: datetime, deadline: float) -> int:
        row_id = "ctid" if self.postgres else "rowid"
        picker = f"SELECT {row_id} FROM {table} WHERE {condition} LIMIT :batch"
        statement = text(
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY({picker}))"
            if self.postgres
            else f"DELETE FROM {table} WHERE rowid IN ({picker})"
        )
        bound = cutoff if self.postgres else _sqlite_ts(cutoff)
        total = 0
        while time.monotonic() < deadline:
            with self.engine.begin() as connection:
                count = int(
                    connection.execute(statement, {"cutoff": bound, "batch": self.policy.batch_rows}).rowcount or 0
                )
            total += count
            if count < self.policy.batch_rows:
                break
            time.sleep(0.005)  # let other writers in between batches
        return total

    # -- job claims ----------------------------------------------------------------------------------------

    def _claim(
        self, connection: Connection, job: str, initial: Callable[[], datetime]
    ) -> datetime | None:
        """Lock the job's progress row (creating it at ``initial()``); None when another controller holds it."""
        query = (
            select(MaintenanceProgress.done_until)
            .where(MaintenanceProgress.job == job)
            .with_for_update(skip_locked=True)
        )
        done = connection.scalar(query)
        if done is not None:
            return done
        exists = connection.scalar(select(MaintenanceProgress.job).where(MaintenanceProgress.job == job))
        if exists is not None:
            return None  # locked by another controller right now
        insert = pg_insert if self.postgres else sqlite_insert
        connection.execute(
            insert(MaintenanceProgress).values(job=job, done_until=initial()).on_conflict_do_nothing()
        )
        return connection.scalar(query)

    def _claim_interval(self, connection: Connection, job: str, now: float, every_s: float) -> bool:
        """True for the one controller that runs ``job`` in this interval."""
        insert = pg_insert if self.postgres else sqlite_insert
        connection.execute(
            insert(MaintenanceProgress).values(job=job, done_until=_dt(0.0)).on_conflict_do_nothing()
        )
        claimed = connection.execute(
            update(MaintenanceProgress)
            .where(MaintenanceProgress.job == job, MaintenanceProgress.done_until <= _dt(now - every_s))
            .values(done_until=_dt(now))
        ).rowcount
        return bool(claimed)


def rolled_up_until(connection: Connection) -> datetime | None:
    """The rollup's progress: samples before this instant are in ``metric_rollups``."""
    return connection.scalar(
        select(MaintenanceProgress.done_until).where(MaintenanceProgress.job == ROLLUP)
    )


def _floor_minute(epoch_s: float) -> float:
    return math.floor(epoch_s / MINUTE_S) * MINUTE_S


def _dt(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(max(0.0, epoch_s), UTC)


def _sqlite_ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

