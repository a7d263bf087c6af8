"""The reconcile pool keeps its size of threads free: each thread stuck in a call is replaced, and leaves after."""

from __future__ import annotations

import threading
import time

from controller.loop_pool import ReconcilePool


def _settle(pool: ReconcilePool, threads: int, timeout_s: float = 5.0) -> int:
    """Call compensate() as the loop's passes do (every 0.1 s) until the pool has ``threads`` threads."""
    deadline = time.monotonic() + timeout_s
    while pool.threads != threads and time.monotonic() < deadline:
        pool.compensate()
        time.sleep(0.05)
    return pool.threads


def test_stuck_threads_are_replaced_and_the_extra_ones_leave_once_unstuck() -> None:
    pool = ReconcilePool(2, stuck_after_s=0.1, max_threads=10)
    release = threading.Event()
    stuck = [pool.submit(release.wait, 10) for _ in range(3)]  # three calls that hang
    assert _settle(pool, 2 + 3) == 5  # one more thread per stuck one
    quick = [pool.submit(lambda x: x * 2, i) for i in range(20)]
    assert [f.result(timeout=5) for f in quick] == [i * 2 for i in range(20)]  # served while three hang
    release.set()
    assert all(f.result(timeout=5) for f in stuck)
    deadline = time.monotonic() + 5
    while pool.threads > 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.threads == 2
    pool.shutdown()
    assert pool.threads == 0


def test_the_total_is_bounded_and_exceptions_reach_the_caller() -> None:
    pool = ReconcilePool(1, stuck_after_s=0.05, max_threads=3)
    release = threading.Event()
    for _ in range(5):
        pool.submit(release.wait, 10)
    assert _settle(pool, 3) == 3
    time.sleep(0.3)
    pool.compensate()
    assert pool.threads == 3  # never more than max_threads, however many hang
    release.set()
    failing = pool.submit(lambda: 1 / 0)
    try:
        failing.result(timeout=5)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("the exception was lost")
    pool.shutdown()
