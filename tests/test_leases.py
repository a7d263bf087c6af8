"""Sharded leases on the store: fair shares, failover after expiry, fencing by term, SQLite's single controller."""

from __future__ import annotations

import socket
import time
import zlib
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, update

from controller.leases import (
    LeaseConfigError,
    LeaseManager,
    LeaseTimings,
    StoreSharedError,
    bucket_of,
    fence_check,
)
from prewarm.db.engine import create_engine_for_url
from prewarm.db.models import ControllerLease, ControllerMember, utc_now

FAST = LeaseTimings(lease_s=0.8, renew_deadline_s=0.5, retry_s=0.1)

# Sub-second leases on the real clock: these run in ``make test``'s one-process pass, not beside another worker.
pytestmark = pytest.mark.one_process


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine_for_url(postgres_url)
    yield engine
    engine.dispose()


def _manager(engine: Engine, name: str, buckets: int = 8, **kwargs: object) -> LeaseManager:
    return LeaseManager(engine, buckets=buckets, timings=FAST, identity=name, **kwargs)  # type: ignore[arg-type]


def test_bucket_of_is_a_stable_hash_not_pythons_randomised_one() -> None:
    assert bucket_of("digits", 16) == zlib.crc32(b"digits") % 16
    assert {bucket_of(f"model-{i}", 4) for i in range(100)} == {0, 1, 2, 3}


def test_a_lone_controller_holds_every_bucket(engine: Engine) -> None:
    manager = _manager(engine, "a")
    held = manager.tick()
    assert sorted(held) == list(range(8))
    assert all(term == 1 for term in held.values())
    assert manager.holds(3) and manager.holds(3, 1) and not manager.holds(3, 2)
    with engine.connect() as connection:
        assert set(connection.scalars(select(ControllerLease.holder))) == {"a"}


def test_two_controllers_share_the_buckets_evenly(pg: Engine) -> None:
    a, b = _manager(pg, "a"), _manager(pg, "b")
    a.tick()
    b.tick()  # b is a member now: a's fair share drops to 4
    a.tick()  # a gives back its extra buckets
    b.tick()  # b takes them
    assert len(a.owned()) == 4 and len(b.owned()) == 4
    assert set(a.owned()).isdisjoint(b.owned())
    for _ in range(3):  # stable: nothing moves once shared
        a.tick()
        b.tick()
    assert len(a.owned()) == 4 and len(b.owned()) == 4
    assert all(term == 2 for term in b.owned().values())  # each of b's buckets changed holder once


def test_a_standby_takes_over_after_the_lease_expires_and_the_old_holder_is_fenced(pg: Engine) -> None:
    a, b = _manager(pg, "a"), _manager(pg, "b")
    terms = a.tick()
    b.tick()
    assert b.owned() == {} or len(b.owned()) < 8  # a still holds its share
    # a stops renewing (paused): its own deadline passes first, then the lease in the store.
    time.sleep(FAST.renew_deadline_s + 0.05)
    assert not a.holds(0, terms[0])
    time.sleep(FAST.lease_s - FAST.renew_deadline_s + 0.1)
    deadline = time.monotonic() + 5
    while len(b.owned()) < 8 and time.monotonic() < deadline:
        b.tick()
        time.sleep(FAST.retry_s)
    assert sorted(b.owned()) == list(range(8))
    assert all(b.owned()[bucket] > terms[bucket] for bucket in range(8))
    # a wakes up: the store refuses its old terms, and its next tick drops them.
    with pg.begin() as connection:
        assert fence_check(connection, "a", terms) == {}
        assert fence_check(connection, "b", b.owned()) == b.owned()
    a.tick()
    assert set(a.owned()).isdisjoint(b.owned())


def test_release_all_hands_over_at_once(pg: Engine) -> None:
    a, b = _manager(pg, "a"), _manager(pg, "b")
    a.tick()
    a.release_all()
    assert a.owned() == {}
    assert sorted(b.tick()) == list(range(8))  # no wait for an expiry


def test_a_second_controller_on_sqlite_is_refused(migrated_sqlite_url: str) -> None:
    engine = create_engine_for_url(migrated_sqlite_url)
    try:
        with engine.begin() as connection:
            connection.execute(update(ControllerLease).values(holder=None, expires_at=None))
        # Leases long enough that the first one cannot expire before the second asks on a busy machine.
        held = LeaseTimings(lease_s=60.0, renew_deadline_s=40.0, retry_s=1.0)
        first = LeaseManager(engine, buckets=8, timings=held, identity="first")
        first.tick()
        second = LeaseManager(engine, buckets=8, timings=held, identity="second")
        with pytest.raises(StoreSharedError, match=r"SQLite supports one controller.*Postgres"):
            second.tick()
        first.release_all()
        assert sorted(_manager(engine, "third").tick()) == list(range(8))
    finally:
        engine.dispose()


def test_controllers_with_different_bucket_counts_refuse_to_run_together(pg: Engine) -> None:
    _manager(pg, "a", buckets=8).tick()
    with pytest.raises(LeaseConfigError, match="PREWARM_LEASE_BUCKETS"):
        _manager(pg, "b", buckets=16).tick()


def test_a_crashed_holder_on_this_host_frees_its_buckets_at_once(pg: Engine) -> None:
    _manager(pg, "crashed").tick()
    with pg.begin() as connection:  # the process behind "crashed" is gone (a pid that cannot exist)
        connection.execute(
            update(ControllerMember)
            .where(ControllerMember.identity == "crashed")
            .values(pid=2**22 + 12345, host=socket.gethostname(), last_seen=utc_now())
        )
    assert sorted(_manager(pg, "restarted").tick()) == list(range(8))


def test_holds_follows_the_monotonic_clock_not_the_store(pg: Engine) -> None:
    clock = [100.0]
    manager = _manager(pg, "a", clock=lambda: clock[0])
    manager.tick()
    assert manager.holds(0)
    clock[0] += FAST.renew_deadline_s  # e.g. SIGSTOP: the monotonic clock kept counting
    assert not manager.holds(0)
    assert manager.owned() == {}
