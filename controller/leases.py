"""Sharded leader election on the store: deployments hashed into buckets, one lease per bucket (Knative-style).

Every controller process is a *member* (a heartbeat row) and competes for the buckets of the ``controller_leases``
table; each takes about its fair share (buckets / live members), so N controllers split the fleet about evenly and
the survivors take over the buckets of one that died once its leases expire. Why a lease table rather than
Postgres advisory locks: a lease expires on its own, so a controller that hangs or is paused (not only one whose
connection dropped) loses its buckets; the holder and term are plain rows anyone can read (the fleet view shows
them); and it works the same on SQLite and through connection poolers, which advisory locks on a session do not.

Times: the database's clock sets and compares expiries (``clock_timestamp()`` on Postgres), so controllers on
machines with skewed clocks agree. Locally a holder trusts a bucket only until ``renew_deadline_s`` after the start
of its last successful renewal (on the monotonic clock, which keeps counting while a process is stopped), which is
earlier than the lease can expire in the store: a controller that could not renew in time stops acting *before*
anyone else may take over (client-go's leaderelection does the same with its renew deadline).

Fencing: every lease change of holder increments the bucket's ``term``. Work is decided under a (bucket, term);
``holds(bucket, term)`` is checked before every backend call, and decisions are written in a transaction that first
locks the lease rows and checks holder, term and expiry, so a controller that lost a bucket while paused writes
nothing for it when it wakes up.

On SQLite (one machine, the embedded default) a single controller holds every bucket; a second one is refused with
a message saying to use Postgres. A holder on the same host whose process is gone is cleared at once (restart
after a crash does not wait for the lease).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from prewarm.db.models import ControllerLease, ControllerMember, utc_now

logger = logging.getLogger(__name__)


class StoreSharedError(RuntimeError):
    """Another controller already runs on this store and the store does not allow several (SQLite)."""


class LeaseConfigError(RuntimeError):
    """Live controllers disagree on the bucket count: hashing would differ and two could own one deployment."""


@dataclass(frozen=True)
class LeaseTimings:
    """client-go's three durations (its defaults are 15 s / 10 s / 2 s; ours are shorter for a 5 s failover)."""

    lease_s: float = 3.0  # how long a renewal keeps the lease in the store
    renew_deadline_s: float = 2.0  # a holder stops acting this long after its last successful renewal began
    retry_s: float = 0.5  # renew / acquire period

    def __post_init__(self) -> None:
        if not 0 < self.retry_s < self.renew_deadline_s < self.lease_s:
            raise ValueError(
                "lease timings must satisfy 0 < retry < renew deadline < lease duration, got "
                f"retry {self.retry_s} s, renew deadline {self.renew_deadline_s} s, lease {self.lease_s} s"
            )


def bucket_of(name: str, buckets: int) -> int:
    """The bucket a deployment belongs to: a hash stable across processes and Python versions."""
    return zlib.crc32(name.encode()) % buckets


def default_identity() -> str:
    """host:pid:random, unique per process start (a restarted process is a new member)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Held:
    term: int
    valid_until: float  # monotonic seconds: act on this bucket only before


class LeaseManager:
    """Holds this process's share of the buckets; ``tick()`` renews, rebalances and acquires (call it every
    ``timings.retry_s``, e.g. from ``run()`` in a thread). Thread-safe: the loop's workers call ``holds()``."""

    def __init__(
        self,
        engine: Engine,
        *,
        buckets: int = 16,
        timings: LeaseTimings | None = None,
        identity: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if buckets < 1:
            raise ValueError("the bucket count must be at least 1")
        self.engine = engine
        self.buckets = buckets
        self.timings = timings or LeaseTimings()
        self.identity = identity or default_identity()
        self.host = socket.gethostname()
        self.clock = clock
        self.exclusive = engine.dialect.name == "sqlite"
        self._lock = threading.Lock()
        self._held: dict[int, Held] = {}
        self._initialised = False
        self.last_tick_ok: float | None = None  # monotonic time of the last tick that reached the store
        self.transitions = 0  # buckets acquired or lost since start
        self.on_change: Callable[[set[int], set[int]], None] | None = None  # (gained, lost) buckets

    # -- what the loop asks --------------------------------------------------------------------------------

    def holds(self, bucket: int, term: int | None = None) -> bool:
        """True while this process may act on ``bucket`` (under ``term``, when given)."""
        with self._lock:
            held = self._held.get(bucket)
        if held is None or self.clock() >= held.valid_until:
            return False
        return term is None or held.term == term

    def owned(self) -> dict[int, int]:
        """Buckets this process may act on now, with their terms."""
        now = self.clock()
        with self._lock:
            return {b: h.term for b, h in self._held.items() if now < h.valid_until}

    def store_reachable(self, within_s: float | None = None) -> bool:
        """Whether the last tick reached the store recently (readiness)."""
        limit = within_s if within_s is not None else self.timings.renew_deadline_s
        return self.last_tick_ok is not None and self.clock() - self.last_tick_ok < limit

    # -- one round -----------------------------------------------------------------------------------------

    def tick(self) -> dict[int, int]:
        """Heartbeat, renew what is held, give back what is over the fair share, take free buckets up to it.

        Returns the buckets held afterwards. Raises SQLAlchemyError when the store is unreachable (what is held
        then lapses at its renew deadline), StoreSharedError / LeaseConfigError when this process must not run.
        """
        started = self.clock()
        with self.engine.begin() as connection:
            now = _store_now(connection)
            if not self._initialised:
                self._initialise(connection, now)
            self._heartbeat(connection, now)
            renewed = self._renew(connection, now)
            alive = 1 if self.exclusive else self._alive_members(connection, now)
            share = math.ceil(self.buckets / max(1, alive))
            released: list[int] = []
            acquired: dict[int, int] = {}
            if len(renewed) > share:
                released = sorted(renewed)[share:]
                self._release(connection, released, now)
                for bucket in released:
                    renewed.pop(bucket)
            elif len(renewed) < share:
                acquired = self._acquire(connection, share - len(renewed), now)
            if self.exclusive and len(renewed) + len(acquired) < self.buckets:
                holder = connection.scalar(
                    select(ControllerLease.holder).where(
                        ControllerLease.holder != self.identity, ControllerLease.expires_at > now
                    )
                )
                raise StoreSharedError(_shared_message(holder or "another process"))
        valid_until = started + self.timings.renew_deadline_s
        with self._lock:
            before = set(self._held)
            self._held = {b: Held(t, valid_until) for b, t in {**renewed, **acquired}.items()}
            after = set(self._held)
        self.last_tick_ok = started
        self._report(before, after, released)
        return {b: h.term for b, h in self._held.items()}

    def run(self, stop: threading.Event) -> None:
        """Tick every ``retry_s`` until ``stop`` is set, then release everything (a clean handover)."""
        while not stop.is_set():
            began = self.clock()
            try:
                self.tick()
            except (StoreSharedError, LeaseConfigError):
                raise
            except Exception as error:  # the store is down: what is held lapses at its deadline
                logger.warning("lease renewal failed (%s: %s); buckets lapse at their deadline",
                               type(error).__name__, error)  # fmt: skip
            stop.wait(max(0.0, self.timings.retry_s - (self.clock() - began)))
        self.release_all()

    def release_all(self) -> None:
        """Give every bucket back and leave the membership, so a standby takes over at once."""
        with self._lock:
            held = sorted(self._held)
            self._held = {}
        try:
            with self.engine.begin() as connection:
                now = _store_now(connection)
                self._release(connection, held, now)
                connection.execute(delete(ControllerMember).where(ControllerMember.identity == self.identity))
        except Exception as error:
            logger.warning("could not release leases on the way out (%s); they expire on their own", error)
            return
        if held:
            logger.info("released buckets %s", _ranges(held))
        if self.on_change is not None and held:
            self.on_change(set(), set(held))

    # -- statements ----------------------------------------------------------------------------------------

    def _initialise(self, connection: Connection, now: datetime) -> None:
        existing = set(connection.scalars(select(ControllerLease.bucket)))
        missing = [b for b in range(self.buckets) if b not in existing]
        if missing:
            connection.execute(
                _insert(connection)(ControllerLease)
                .values([{"bucket": b, "term": 0} for b in missing])
                .on_conflict_do_nothing()
            )
        self._clear_dead_local_members(connection, now)
        fresh = now - timedelta(seconds=self.timings.lease_s)
        others = connection.execute(
            select(ControllerMember.identity, ControllerMember.buckets).where(
                ControllerMember.identity != self.identity, ControllerMember.last_seen > fresh
            )
        ).all()
        disagree = [identity for identity, buckets in others if buckets != self.buckets]
        if disagree:
            raise LeaseConfigError(
                f"live controllers {disagree} shard over a different bucket count than this one "
                f"({self.buckets}): set PREWARM_LEASE_BUCKETS to the same value on every controller"
            )
        if not others:  # alone: the table may hold buckets of an older, larger setting
            connection.execute(delete(ControllerLease).where(ControllerLease.bucket >= self.buckets))
        if self.exclusive:
            holders = connection.scalars(
                select(ControllerLease.holder).where(
                    ControllerLease.holder.is_not(None),
                    ControllerLease.holder != self.identity,
                    ControllerLease.expires_at > now,
                )
            ).all()
            if holders:
                raise StoreSharedError(_shared_message(holders[0] or "another process"))
        self._initialised = True

    def _clear_dead_local_members(self, connection: Connection, now: datetime) -> None:
        """A member on this host whose process is gone (a crash) gives its buckets up now, not at expiry."""
        rows = connection.execute(
            select(ControllerMember.identity, ControllerMember.pid).where(
                ControllerMember.host == self.host, ControllerMember.identity != self.identity
            )
        ).all()
        for identity, pid in rows:
            if pid and pid != os.getpid() and not _process_alive(pid):
                logger.info("controller %s (pid %d on this host) is gone: its buckets are free now", identity, pid)
                connection.execute(
                    update(ControllerLease)
                    .where(ControllerLease.holder == identity)
                    .values(holder=None, expires_at=now)
                )
                connection.execute(delete(ControllerMember).where(ControllerMember.identity == identity))

    def _heartbeat(self, connection: Connection, now: datetime) -> None:
        values = {
            "identity": self.identity, "host": self.host, "pid": os.getpid(), "buckets": self.buckets,
            "started_at": now, "last_seen": now,
        }  # fmt: skip
        statement = _insert(connection)(ControllerMember).values(values)
        connection.execute(
            statement.on_conflict_do_update(index_elements=["identity"], set_={"last_seen": now})
        )
        # Members silent for long are gone for good (a crash): keep the table small.
        connection.execute(
            delete(ControllerMember).where(
                ControllerMember.last_seen < now - timedelta(seconds=20 * self.timings.lease_s)
            )
        )

    def _renew(self, connection: Connection, now: datetime) -> dict[int, int]:
        with self._lock:
            mine = {b: h.term for b, h in self._held.items()}
        if not mine:
            return {}
        rows = connection.execute(
            update(ControllerLease)
            .where(ControllerLease.holder == self.identity, ControllerLease.bucket.in_(sorted(mine)))
            .values(renewed_at=now, expires_at=now + timedelta(seconds=self.timings.lease_s))
            .returning(ControllerLease.bucket, ControllerLease.term)
        ).all()
        return {bucket: term for bucket, term in rows if mine.get(bucket) == term}

    def _alive_members(self, connection: Connection, now: datetime) -> int:
        fresh = now - timedelta(seconds=self.timings.lease_s)
        return int(
            connection.scalar(
                select(func.count()).select_from(ControllerMember).where(ControllerMember.last_seen > fresh)
            )
            or 1
        )

    def _acquire(self, connection: Connection, wanted: int, now: datetime) -> dict[int, int]:
        free = (ControllerLease.holder.is_(None)) | (ControllerLease.expires_at <= now)
        candidates = (
            select(ControllerLease.bucket)
            .where(free, ControllerLease.bucket < self.buckets)
            .order_by(ControllerLease.bucket)
            .limit(wanted)
            .with_for_update(skip_locked=True)
        )
        rows = connection.execute(
            update(ControllerLease)
            .where(ControllerLease.bucket.in_(candidates.scalar_subquery()), free)
            .values(
                holder=self.identity,
                term=ControllerLease.term + 1,
                acquired_at=now,
                renewed_at=now,
                expires_at=now + timedelta(seconds=self.timings.lease_s),
            )
            .returning(ControllerLease.bucket, ControllerLease.term)
        ).all()
        return {bucket: term for bucket, term in rows}

    def _release(self, connection: Connection, buckets: Iterable[int], now: datetime) -> None:
        buckets = list(buckets)
        if buckets:
            connection.execute(
                update(ControllerLease)
                .where(ControllerLease.holder == self.identity, ControllerLease.bucket.in_(buckets))
                .values(holder=None, expires_at=now)
            )

    def _report(self, before: set[int], after: set[int], released: list[int]) -> None:
        gained, lost = after - before, before - after
        if not gained and not lost:
            return
        self.transitions += len(gained) + len(lost)
        if gained:
            logger.info("%s acquired buckets %s", self.identity, _ranges(gained))
        if released:
            logger.info("%s gave back buckets %s (over its fair share)", self.identity, _ranges(released))
        if lost - set(released):
            logger.warning("%s lost buckets %s", self.identity, _ranges(lost - set(released)))
        if self.on_change is not None:
            self.on_change(gained, lost)


def fence_check(connection: Connection, identity: str, terms: dict[int, int]) -> dict[int, int]:
    """Of the buckets in ``terms``, those this identity still holds, with their current terms; their lease rows
    stay locked until the transaction ends (no takeover can commit in between). Write only for work decided under
    those same terms."""
    if not terms:
        return {}
    now = _store_now(connection)
    rows = connection.execute(
        select(ControllerLease.bucket, ControllerLease.term)
        .where(
            ControllerLease.bucket.in_(sorted(terms)),
            ControllerLease.holder == identity,
            ControllerLease.expires_at > now,
        )
        .with_for_update(read=True)
    ).all()
    return {bucket: term for bucket, term in rows}


def lease_rows(connection: Connection) -> dict[int, tuple[str | None, int, datetime | None]]:
    """bucket -> (holder, term, expires_at), for the fleet view."""
    rows = connection.execute(
        select(ControllerLease.bucket, ControllerLease.holder, ControllerLease.term, ControllerLease.expires_at)
    ).all()
    return {bucket: (holder, term, expires) for bucket, holder, term, expires in rows}


def _shared_message(holder: str) -> str:
    return (
        f"another controller ({holder}) is running on this SQLite store; SQLite supports one controller. Stop it "
        "first, or run several controllers on Postgres (PREWARM_DATABASE_URL=postgresql+psycopg://...)"
    )


def _store_now(connection: Connection) -> datetime:
    """The store's clock (Postgres) or this machine's (SQLite: one machine anyway)."""
    if connection.dialect.name == "postgresql":
        value = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
        assert isinstance(value, datetime)
        return value
    return utc_now()


def _insert(connection: Connection):  # type: ignore[no-untyped-def]
    return pg_insert if connection.dialect.name == "postgresql" else sqlite_insert


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ranges(buckets: Iterable[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    values = sorted(buckets)
    parts: list[str] = []
    start = previous = None
    for value in values:
        if start is None:
            start = previous = value
        elif value == (previous or 0) + 1:
            previous = value
        else:
            parts.append(f"{start}-{previous}" if start != previous else f"{start}")
            start = previous = value
    if start is not None:
        parts.append(f"{start}-{previous}" if start != previous else f"{start}")
    return ", ".join(parts) or "none"
