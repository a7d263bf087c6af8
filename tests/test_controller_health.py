"""/livez and /readyz mean something: a stuck loop fails liveness, an unreachable store fails readiness."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.testclient import TestClient

from controller.leases import LeaseManager, LeaseTimings
from controller.loop import ReconcileLoop
from controller.loop_metrics import ControllerMetrics
from controller.runtime import ControllerRuntime
from controller.serve import health_routes
from controller.sources.store import StoreSource
from prewarm.db.engine import create_engine_for_url
from prewarm.db.store import MetricsStore


class StuckLoop(ReconcileLoop):
    """A loop whose passes hang (a deadlock, a call without a timeout) after the first ``passes`` ones."""

    def __init__(self, *args: object, passes: int, release: threading.Event, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.allowed = passes
        self.release = release

    def pass_once(self, now: float | None = None) -> list[Future[None]]:
        if self.allowed <= 0:
            self.release.wait(30)
        self.allowed -= 1
        return super().pass_once(now)


def _app(runtime: ControllerRuntime) -> TestClient:
    app = Starlette()
    livez, readyz = health_routes(runtime)
    app.add_route("/livez", livez)
    app.add_route("/readyz", readyz)
    return TestClient(app)


def test_livez_fails_when_no_pass_completes_and_recovers_when_passes_resume(engine: Engine) -> None:
    release = threading.Event()
    loop = StuckLoop(
        engine, StoreSource(MetricsStore(engine)), state_root=Path("/tmp"),
        metrics=ControllerMetrics(CollectorRegistry()), passes=3, release=release,
    )  # fmt: skip
    runtime = ControllerRuntime(engine, loop, None, tick_s=0.05, liveness_stale_s=0.5)
    client = _app(runtime)
    event_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=event_loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(runtime.start(), event_loop).result(10)
        deadline = time.monotonic() + 10
        while loop.last_pass_completed is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/livez").status_code == 200
        deadline = time.monotonic() + 10
        while client.get("/livez").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # the fourth pass hangs: liveness must fail within liveness_stale_s
        stuck = client.get("/livez")
        assert stuck.status_code == 503 and "no reconcile pass completed" in stuck.json()["detail"]
        release.set()
        deadline = time.monotonic() + 10
        while client.get("/livez").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/livez").status_code == 200
    finally:
        release.set()
        asyncio.run_coroutine_threadsafe(runtime.stop(), event_loop).result(60)
        event_loop.call_soon_threadsafe(event_loop.stop)
        thread.join(10)


def test_readyz_says_which_buckets_are_held_and_fails_when_the_store_is_unreachable(
    engine: Engine, tmp_path: Path
) -> None:
    # A lease that cannot expire while the test builds the loop on a busy machine (0.9 s did, beside another worker).
    leases = LeaseManager(engine, buckets=4, timings=LeaseTimings(60.0, 40.0, 1.0), identity="ready-test")
    leases.tick()
    loop = ReconcileLoop(engine, StoreSource(MetricsStore(engine)), state_root=tmp_path, leases=leases,
                         metrics=ControllerMetrics(CollectorRegistry()))  # fmt: skip
    runtime = ControllerRuntime(engine, loop, None, leases=leases)
    body = _app(runtime).get("/readyz").json()
    assert body["ready"] is True and body["buckets"] == [0, 1, 2, 3] and body["identity"] == "ready-test"

    gone = create_engine_for_url("postgresql+psycopg://postgres@127.0.0.1:9/nowhere", connect_args={"connect_timeout": 1})
    down = LeaseManager(gone, buckets=4, timings=LeaseTimings(0.9, 0.6, 0.2), identity="down")
    with pytest.raises(OperationalError):
        down.tick()
    runtime = ControllerRuntime(engine, loop, None, leases=down)
    response = _app(runtime).get("/readyz")
    assert response.status_code == 503 and response.json()["store_reachable"] is False
    gone.dispose()
