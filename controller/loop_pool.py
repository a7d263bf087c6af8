"""The reconcile workers: a fixed number of threads for the work, plus one more for each thread stuck in a call.

A reconcile is mostly Python (``decide()``, reading windows) with a few backend calls. Many threads would only
fight over the GIL (and starve the loop's pass thread), so the pool keeps ``size`` threads for the work. But a
backend that hangs (an API server that does not answer until its timeout) holds its thread: when a thread has been
busy longer than ``stuck_after_s``, the pool starts another, so ``size`` threads stay free for everybody else
(Go's scheduler does the same for threads blocked in a system call). A stuck thread costs no CPU; once its call
returns it leaves if the pool has more threads than it needs. ``max_threads`` bounds the total.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

logger = logging.getLogger(__name__)


class ReconcilePool:
    def __init__(
        self, size: int, *, stuck_after_s: float = 1.0, max_threads: int = 256, name: str = "reconcile"
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one thread")
        self.size = size
        self.stuck_after_s = stuck_after_s
        self.max_threads = max(size, max_threads)
        self.name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._busy_since: dict[int, float] = {}  # thread ident -> monotonic start of its current task
        self._threads = 0
        self._serial = 0
        self._closed = False
        for _ in range(size):
            self._start_thread()

    @property
    def threads(self) -> int:
        with self._lock:
            return self._threads

    def stuck(self) -> int:
        """Threads busy for longer than ``stuck_after_s`` now."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for since in self._busy_since.values() if now - since > self.stuck_after_s)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, fn, args))
        self.compensate()
        return future

    def compensate(self) -> None:
        """Start threads so that ``size`` of them are not stuck (up to ``max_threads``)."""
        stuck = self.stuck()
        with self._lock:
            missing = min(self.size + stuck, self.max_threads) - self._threads
        for _ in range(max(0, missing)):
            self._start_thread()

    def shutdown(self, wait_s: float = 30.0) -> None:
        """No new tasks; the queued ones run; returns when the threads are done or after ``wait_s``."""
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)
        deadline = time.monotonic() + wait_s
        while self.threads and time.monotonic() < deadline:
            time.sleep(0.02)

    def _start_thread(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._threads += 1
            self._serial += 1
            serial = self._serial
        threading.Thread(target=self._work, name=f"{self.name}-{serial}", daemon=True).start()

    def _work(self) -> None:
        ident = threading.get_ident()
        while True:
            item = self._queue.get()
            if item is None:
                break
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._busy_since[ident] = time.monotonic()
            try:
                future.set_result(fn(*args))
            except BaseException as error:  # handed to whoever waits on the future
                future.set_exception(error)
            finally:
                with self._lock:
                    self._busy_since.pop(ident, None)
            if self._leave_if_surplus():
                return
        with self._lock:
            self._threads -= 1

    def _leave_if_surplus(self) -> bool:
        """A thread that finished its task leaves (and is counted out) when the pool has more than it needs."""
        now = time.monotonic()
        with self._lock:
            stuck = sum(1 for since in self._busy_since.values() if now - since > self.stuck_after_s)
            if self._threads > self.size + stuck:
                self._threads -= 1
                return True
        return False
