"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium via /usr/bin/chromedriver, Selenium).

The app is served by uvicorn on 127.0.0.1 from a real Postgres database seeded with a deployment; the test checks
what a user would see: the chart drawn with data, the decisions with their reasons, a live refresh that picks up a
new decision, and no errors in the browser console.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, select

from controller import repository
from controller.dashboard import dashboard_router
from prewarm.db.engine import create_engine_for_url, session_factory
from tests.test_dashboard_api import SCALE_DOWN_REASON, SCALE_UP_REASON, seed_deployment

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 20.0
RPS_STROKE_RGB = (31, 111, 235)  # dashboard.js draws actual rps in #1f6feb

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine_for_url(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def dashboard_url(pg_engine: Engine) -> Iterator[str]:
    """The dashboard served by a real uvicorn on 127.0.0.1 (in a thread), refreshing every second."""
    app = FastAPI()
    app.include_router(dashboard_router(pg_engine, refresh_s=1.0))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("needs Debian's chromium and chromium-driver: run scripts/ensure-system.sh (as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for(driver: Any, script: str, what: str) -> Any:
    """Poll a JavaScript expression until it is truthy (bounded); returns its value."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {WAIT_S:.0f} s waiting for {what}")


def _coloured_pixels(driver: Any, deployment: str, rgb: tuple[int, int, int]) -> int:
    """How many pixels of the deployment's chart canvas are (nearly) the given colour."""
    return int(
        driver.execute_script(
            """
            const [name, r, g, b] = arguments;
            const canvas = document.querySelector(`section[data-deployment="${name}"] canvas`);
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let count = 0;
            for (let i = 0; i < pixels.length; i += 4) {
              if (pixels[i + 3] > 200 && Math.abs(pixels[i] - r) < 40 && Math.abs(pixels[i + 1] - g) < 40
                  && Math.abs(pixels[i + 2] - b) < 40) count++;
            }
            return count;
            """,
            deployment,
            *rgb,
        )
    )


def test_dashboard_draws_the_chart_lists_decisions_and_refreshes_without_console_errors(
    pg_engine: Engine, dashboard_url: str, browser: Any, tmp_path: Path
) -> None:
    seeded = seed_deployment(pg_engine, time.time(), "digits")
    browser.get(f"{dashboard_url}/")  # the root redirects to the fleet overview
    assert browser.current_url.endswith("/dashboard")
    assert browser.title == "prewarm fleet"
    browser.find_element("css selector", 'tr[data-name="digits"] a').click()  # to the deployment's page
    _wait_for(browser, "document.title === 'prewarm dashboard'", "the deployment page")
    assert browser.current_url.endswith("/dashboard/deployments/digits")

    _wait_for(
        browser, "window.prewarmDashboard && window.prewarmDashboard.refreshes >= 1", "the first refresh"
    )
    drawn = browser.execute_script(
        "const c = window.prewarmDashboard.charts.digits;"
        "return {rps: c.data[1].filter(v => v !== null).length, band: c.data[4].filter(v => v !== null).length,"
        " desired: c.data[5].filter(v => v !== null).length, series: c.series.length};"
    )
    assert drawn["rps"] > 50, drawn  # 30 min of samples on a 60 min window of 15 s bins
    assert drawn["band"] > 0 and drawn["desired"] > 0, drawn
    assert _coloured_pixels(browser, seeded.name, RPS_STROKE_RGB) > 200, "the rps line was not drawn"

    panel = browser.find_element("css selector", 'section[data-deployment="digits"] [data-panel]').text
    assert SCALE_UP_REASON in panel and SCALE_DOWN_REASON in panel

    # A decision logged after the page loaded appears without a reload.
    fresh_reason = f"reactive: p95 latency 240 ms above 100 ms (marker {time.time_ns()})"
    with session_factory(pg_engine)() as session:
        deployment = repository.get_deployment(session, "digits")
        repository.record_decision(
            session,
            deployment.id,
            ts=datetime.now(UTC),
            current=2,
            desired=4,
            applied=True,
            source="reactive",
            reasons=[fresh_reason],
            policy_version=1,
        )
        session.commit()
    _wait_for(
        browser,
        f"document.querySelector('section[data-deployment=\"digits\"] [data-panel]').textContent"
        f".includes({fresh_reason!r})",
        "the new decision to appear",
    )

    # Cost beside the replicas: the fresh decision's 4 replicas at the policy's price, and a saving so far.
    with session_factory(pg_engine)() as session:
        _, policy = repository.current_policy(session, repository.get_deployment(session, "digits").id)
    expected = f"{4 * policy.price_per_replica_hour:.2f} / h"
    _wait_for(
        browser,
        "(document.querySelector('section[data-deployment=\"digits\"] [data-cost-per-hour]') || {textContent: ''})"
        f".textContent.startsWith({expected!r})",
        "the cost per hour of the new decision",
    )
    saving = browser.find_element("css selector", 'section[data-deployment="digits"] [data-cost-saving]').text
    assert saving.endswith("%"), saving  # the decisions so far against their peak held all along

    screenshot = tmp_path / "dashboard.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000

    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    assert browser.execute_script("return window.prewarmDashboard.failures") == 0


def _seed_fleet(engine: Engine, count: int) -> None:
    """``count`` deployments with policies and live statuses as their controllers would have written them."""
    from sqlalchemy import insert

    from controller.policy import ScalingPolicy
    from prewarm.db.models import Deployment, DeploymentStatus, Policy

    spec = ScalingPolicy().model_dump(mode="json")
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(insert(Deployment), [
            {"name": f"model-{i:04d}", "model": "m", "backend": "kubernetes", "backend_config": {},
             "min_replicas": 1, "max_replicas": 10, "price_per_replica_hour": 0, "created_at": now}
            for i in range(count)
        ])  # fmt: skip
        ids = dict(connection.execute(select(Deployment.name, Deployment.id)).all())
        connection.execute(insert(Policy), [
            {"deployment_id": i, "version": 1, "spec": spec, "author": "test", "comment": "", "created_at": now}
            for i in ids.values()
        ])  # fmt: skip
        connection.execute(insert(DeploymentStatus), [
            {"deployment_id": ids[f"model-{i:04d}"], "updated_at": now, "controller": f"controller-{i % 2}",
             "term": 1, "current_replicas": 3, "desired_replicas": 10 if i % 10 == 0 else 3,
             "ready_replicas": 3, "source": "predictive" if i % 3 else "reactive",
             "reason": f"predictive: upper forecast {100 + i} rps", "forecast_used": bool(i % 3),
             "forecast_upper_rps": 100.0 + i, "decided_at": now,
             "error_stage": "backend" if i % 97 == 0 else None,
             "error_message": "HTTP 403 forbidden" if i % 97 == 0 else None,
             "error_at": now if i % 97 == 0 else None, "errors_total": 1 if i % 97 == 0 else 0}
            for i in range(count)
        ])  # fmt: skip


def test_the_fleet_overview_stays_fast_at_1000_deployments_with_filters_and_pages(
    pg_engine: Engine, dashboard_url: str, browser: Any
) -> None:
    _seed_fleet(pg_engine, 1000)
    started = time.perf_counter()
    browser.get(f"{dashboard_url}/dashboard")
    load_s = time.perf_counter() - started
    rows = browser.find_elements("css selector", "table.fleet tbody tr")
    assert len(rows) == 50  # one page
    assert browser.find_element("css selector", "[data-range]").text == "1–50 of 1000"
    print(f"fleet overview with 1000 deployments loaded in {load_s * 1000:.0f} ms")
    assert load_s < 2.0, f"the overview took {load_s:.2f} s"

    # The counts per state and a filter by state.
    errors_tab = browser.find_element("css selector", 'nav.states a[data-state="errors"]')
    assert errors_tab.text.endswith(" 11")  # model-0000, 0097, ..., 0970
    errors_tab.click()
    _wait_for(browser, "document.querySelectorAll('table.fleet tbody tr').length === 11", "the error filter")
    assert "HTTP 403 forbidden" in browser.find_element("css selector", "table.fleet").text

    # Filter by name, then page through everything.
    browser.get(f"{dashboard_url}/dashboard?name=model-012")
    names = [r.get_attribute("data-name") for r in browser.find_elements("css selector", "table.fleet tbody tr")]
    assert names == [f"model-012{i}" for i in range(10)]
    browser.get(f"{dashboard_url}/dashboard?limit=200")
    browser.find_element("css selector", 'a[rel="next"]').click()
    _wait_for(browser, "document.querySelector('[data-range]').textContent === '201–400 of 1000'", "page 2")

    _wait_for(browser, "window.prewarmFleet && window.prewarmFleet.refreshes >= 1", "a live refresh")
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    assert browser.execute_script("return window.prewarmFleet.failures") == 0


def _seed_at_zero(engine: Engine, name: str) -> tuple[datetime, datetime]:
    """A min-0 deployment its controller took to zero: the status row and the decisions to and from zero."""
    from datetime import timedelta

    from controller.policy import ScalingPolicy
    from prewarm.db.models import DeploymentStatus

    now = datetime.now(UTC).replace(microsecond=0)
    idle_since, wake_at = now - timedelta(minutes=7), now + timedelta(minutes=12)
    with session_factory(engine)() as session:
        deployment = repository.create_deployment(
            session, name=name, model="digits_mlp", backend="dry-run", backend_config={}, min_replicas=0,
            max_replicas=4, price_per_replica_hour=0.25, policy=ScalingPolicy(min_replicas=0, max_replicas=4),
            author="test",
        )  # fmt: skip
        for ago_s, current, desired, source, reason in (
            (900, 0, 1, "activate", "activate: 2 requests held at zero -> 1 at once"),
            (400, 1, 0, "scale-to-zero", "scale-to-zero: idle 31 s and no traffic forecast for the next 45 s -> 0"),
        ):
            repository.record_decision(
                session, deployment.id, ts=now - timedelta(seconds=ago_s), current=current, desired=desired,
                applied=True, source=source, reasons=[reason], policy_version=1,
            )  # fmt: skip
        session.add(
            DeploymentStatus(
                deployment_id=deployment.id, updated_at=now, controller="controller-0", term=1,
                current_replicas=0, desired_replicas=0, ready_replicas=0, source="scale-to-zero",
                reason="scale-to-zero: at zero: forecast 3 rps from later -> wake later", forecast_used=True,
                forecast_upper_rps=0.1, decided_at=now, idle_since=idle_since, next_wake_at=wake_at,
            )
        )  # fmt: skip
        session.commit()
    return idle_since, wake_at


def test_a_deployment_at_zero_shows_zero_ready_idle_since_and_the_next_wake_up(
    pg_engine: Engine, dashboard_url: str, browser: Any
) -> None:
    idle_since, wake_at = _seed_at_zero(pg_engine, "sleepy")
    browser.get(f"{dashboard_url}/dashboard")
    row = browser.find_element("css selector", 'tr[data-name="sleepy"]')
    assert row.find_element("css selector", ".tag.zero").text == "at zero"
    assert row.find_element("css selector", "td.num").text.startswith("0 / 0")
    assert f"idle since {idle_since:%H:%M:%S} UTC" in row.text
    assert f"next wake-up at {wake_at:%H:%M:%S} UTC" in row.text

    row.find_element("css selector", "a").click()
    _wait_for(browser, "document.title === 'prewarm dashboard'", "the deployment page")
    _wait_for(
        browser, "window.prewarmDashboard && window.prewarmDashboard.refreshes >= 1", "the first refresh"
    )
    panel = browser.find_element("css selector", 'section[data-deployment="sleepy"] [data-panel]')
    assert panel.find_element("css selector", "p.replicas").text.startswith("0 ready / 0 desired")
    assert panel.find_element("css selector", "dd.idle-since").text == f"{idle_since:%H:%M:%S} UTC"
    assert panel.find_element("css selector", "dd.next-wake").text == f"{wake_at:%H:%M:%S} UTC"
    # the decision log explains both transitions
    assert "scale-to-zero: idle 31 s and no traffic forecast for the next 45 s -> 0" in panel.text
    assert "activate: 2 requests held at zero -> 1 at once" in panel.text
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
