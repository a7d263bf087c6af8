"""The activator: with no replica ready, hold requests (bounded) and ask the controller to activate the deployment.

A deployment scaled to zero still has its gateway. A request that finds no replica ready waits here instead of
getting a 503: the first one pushes ``POST /api/v1/deployments/NAME/activate`` with the number of held requests to
the control API at once (not at the controller's next tick), the push repeats every ``repush_s`` while requests
are held and whenever the gateway has just stored the second they arrived in (a lost push costs a second, not
the requests), and every held request is released the moment a replica
becomes routable. Bounds: ``max_held`` requests at once and ``max_wait_s`` each; past them the caller answers 503
with ``Retry-After``. Knative's activator does the same for its deployments at zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Notify = Callable[[int], Awaitable[None]]


class ActivatorFull(Exception):
    """The activator already holds its maximum of requests."""


class ActivationTimeout(Exception):
    """No replica became ready within the activator's longest wait."""


@dataclass(frozen=True)
class ActivatorConfig:
    """Bounds of the activator and where it pushes (``PREWARM_ACTIVATOR_*``)."""

    max_held: int = 1000
    max_wait_s: float = 30.0
    repush_s: float = 1.0
    controller_url: str = ""  # empty: no push (the controller finds the load in the metrics at its own pace)
    token: str = ""


def http_notifier(controller_url: str, deployment: str, token: str, timeout_s: float = 2.0) -> Notify:
    """A push to the control API's ``activate`` endpoint, run in a thread (the gateway's loop never waits on it)."""
    url = f"{controller_url.rstrip('/')}/api/v1/deployments/{deployment}/activate"

    def post(held: int) -> None:
        body = json.dumps({"held_requests": held}).encode()
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("content-type", "application/json")
        if token:
            request.add_header("authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()

    async def notify(held: int) -> None:
        await asyncio.to_thread(post, held)

    return notify


class Activator:
    """Holds requests while no replica is ready; ``replica_ready()`` releases them all."""

    def __init__(self, config: ActivatorConfig, notify: Notify | None = None) -> None:
        self.config = config
        self.notify = notify
        self.held = 0
        self.held_total = 0  # counters for /metrics and tests
        self.refused_total = 0
        self.timed_out_total = 0
        self.pushes_total = 0
        self.push_failures_total = 0
        self._ready = asyncio.Event()
        self._pusher: asyncio.Task[None] | None = None
        self._push_now = asyncio.Event()

    def replica_ready(self) -> None:
        """A replica became routable: release every held request."""
        if self.held:
            self._ready.set()

    async def hold(self, routable: Callable[[], bool]) -> float:
        """Wait until ``routable()`` (re-checked when released); returns the seconds held. Raises ActivatorFull or
        ActivationTimeout."""
        if self.held >= self.config.max_held:
            self.refused_total += 1
            raise ActivatorFull(f"no replica is ready and {self.config.max_held} requests are already held")
        started = time.monotonic()
        deadline = started + self.config.max_wait_s
        self.held += 1
        self.held_total += 1
        if self.held == 1:
            self._ready.clear()
            log.info("no replica ready: holding requests and asking the controller to activate")
        self._start_pushing()
        try:
            while not routable():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.timed_out_total += 1
                    raise ActivationTimeout(f"no replica became ready within {self.config.max_wait_s:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), remaining)
                if not routable():
                    self._ready.clear()  # a replica came and went: wait for the next one
            return time.monotonic() - started
        finally:
            self.held -= 1

    def _start_pushing(self) -> None:
        if self.notify is None:
            return
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.get_running_loop().create_task(self._push_while_held())

    async def _push_while_held(self) -> None:
        """Push at once, then every ``repush_s`` while requests are held (with the count held then)."""
        assert self.notify is not None
        while self.held > 0:
            try:
                self.pushes_total += 1
                await self.notify(self.held)
            except (OSError, urllib.error.URLError, TimeoutError, ValueError) as error:
                self.push_failures_total += 1
                log.warning("activator: push to the controller failed: %s", error)
            self._push_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._push_now.wait(), self.config.repush_s)

    def nudge(self) -> None:
        """Push again now rather than at the next ``repush_s`` (e.g. the gateway just stored the held second)."""
        if self.held:
            self._push_now.set()

    async def stop(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
