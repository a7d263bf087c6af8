"""The dashboard's routes on SQLite and real Postgres: page, chart series, side panel, static files, redirect."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from controller import repository
from controller.dashboard import dashboard_router
from controller.dashboard.data import time_grid
from controller.policy import ScalingPolicy
from prewarm import metric_names
from prewarm.db.engine import session_factory
from prewarm.db.models import DeploymentStatus, ForecastPoint, ForecastRun
from prewarm.db.store import MetricsStore, Sample

NOW = 1_900_000_000.0  # a fixed "now" (2030-03-17), passed to every route as ``end``
SAMPLE_EVERY_S = 5.0
SCALE_UP_REASON = "predictive: forecast high 910 rps in 45 s needs 3 replicas at 70 % of 400 rps"
SCALE_DOWN_REASON = "stabilised: lowest recommendation of the last 300 s is 2"
PIN_NOTE = "launch event <b>keep warm</b>"


@dataclass(frozen=True)
class Seeded:
    """What ``seed_deployment`` wrote, for assertions."""

    name: str
    now: float
    rps_samples: int


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def seed_deployment(engine: Engine, now: float, name: str = "digits") -> Seeded:
    """A deployment with 30 min of rps and ready-replica samples, two forecast runs, a pin and decisions."""
    with session_factory(engine)() as session:
        deployment = repository.create_deployment(
            session,
            name=name,
            model="digits_mlp",
            backend="dry-run",
            backend_config={},
            min_replicas=1,
            max_replicas=6,
            price_per_replica_hour=0.25,
            policy=ScalingPolicy(replica_capacity_rps=400.0),
            author="test",
        )
        deployment_id = deployment.id
        for created_ago_s in (
            1200.0,
            120.0,
        ):  # an old run and a fresh one: the fresh one wins where both cover
            created = now - created_ago_s
            run = ForecastRun(
                deployment_id=deployment_id,
                created_at=_utc(created),
                model_name="seasonal_naive" if created_ago_s > 600 else "ets",
                step_s=60.0,
                horizon_s=1800.0,
                detail={},
            )
            session.add(run)
            session.flush()
            start = math.floor(created / 60.0) * 60.0
            for k in range(30):
                point = 600.0 + 200.0 * math.sin((start + 60 * k) / 600.0)
                session.add(
                    ForecastPoint(
                        run_id=run.id,
                        target_ts=_utc(start + 60.0 * k),
                        point=point,
                        lower=point * 0.8,
                        upper=point * 1.2,
                    )
                )
        for ago_s, current, desired, reason in (
            (1500.0, 2, 2, "hold: within tolerance"),
            (900.0, 2, 3, SCALE_UP_REASON),
            (300.0, 3, 2, SCALE_DOWN_REASON),
            (10.0, 2, 2, "hold: within tolerance"),
        ):
            repository.record_decision(
                session,
                deployment_id,
                ts=_utc(now - ago_s),
                current=current,
                desired=desired,
                applied=True,
                source="predictive" if desired > current else "stabilised",
                reasons=[reason, "bounds: within [1, 6]"],
                policy_version=1,
            )
        repository.create_override(
            session,
            deployment_id,
            kind="floor",
            value=2,
            starts_at=_utc(now - 600),
            ends_at=_utc(now + 3600),
            reason=PIN_NOTE,
            author="ops@example.com",
        )
        session.commit()
    stamps = np.arange(now - 1800.0, now, SAMPLE_EVERY_S)
    rps = 600.0 + 200.0 * np.sin(stamps / 600.0)
    samples = [
        Sample(name, metric_names.REQUESTS_RPS, float(t), float(v)) for t, v in zip(stamps, rps, strict=True)
    ]
    samples += [Sample(name, metric_names.READY_REPLICAS, float(t), 2.0) for t in stamps]
    MetricsStore(engine).insert_samples(samples, now=now)
    return Seeded(name=name, now=now, rps_samples=len(stamps))


def make_app(engine: Engine) -> FastAPI:
    app = FastAPI()
    app.include_router(dashboard_router(engine))
    return app


@pytest.fixture
def client(engine: Engine) -> TestClient:
    return TestClient(make_app(engine))


def test_root_redirects_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/dashboard"


def test_fleet_page_without_deployments_says_how_to_create_one(client: TestClient) -> None:
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert "No deployment matches" in response.text and "POST /api/v1/deployments" in response.text


def test_fleet_page_lists_each_deployment_with_a_link_to_its_page(engine: Engine, client: TestClient) -> None:
    seed_deployment(engine, NOW, "digits")
    seed_deployment(engine, NOW, "resnet")
    page = client.get("/dashboard").text
    assert 'href="/dashboard/deployments/digits"' in page and 'href="/dashboard/deployments/resnet"' in page
    only = client.get("/dashboard/fleet", params={"name": "res"}).text
    assert 'data-name="resnet"' in only and 'data-name="digits"' not in only
    assert client.get("/dashboard", params={"state": "nonsense"}).status_code == 422


def test_deployment_page_renders_its_section_with_decision_reasons(engine: Engine, client: TestClient) -> None:
    seed_deployment(engine, NOW, "digits")
    seed_deployment(engine, NOW, "resnet")
    page = client.get("/dashboard/deployments/digits", params={"end": NOW}).text
    assert 'data-deployment="digits"' in page and 'data-deployment="resnet"' not in page
    assert SCALE_UP_REASON in page and SCALE_DOWN_REASON in page
    assert client.get("/dashboard/deployments/nope").status_code == 404


def test_page_escapes_stored_text(engine: Engine, client: TestClient) -> None:
    seed_deployment(engine, NOW)
    page = client.get("/dashboard/deployments/digits", params={"end": NOW}).text
    assert "<b>keep warm</b>" not in page
    assert "&lt;b&gt;keep warm&lt;/b&gt;" in page


def test_series_holds_every_sampled_bin_of_the_window(engine: Engine, client: TestClient) -> None:
    seeded = seed_deployment(engine, NOW)
    payload = client.get(f"/dashboard/api/{seeded.name}/series", params={"minutes": 30, "end": NOW}).json()
    grid = time_grid(NOW, 30)
    assert payload["t"][0] == grid.start and payload["step_s"] == grid.step_s
    assert all(
        len(payload[key]) == len(payload["t"]) for key in ("rps", "forecast_upper", "replicas_desired")
    )
    history_bins = [i for i, t in enumerate(payload["t"]) if t >= NOW - 1800 and t + grid.step_s <= NOW]
    assert all(payload["rps"][i] is not None for i in history_bins)
    assert all(v is None for t, v in zip(payload["t"], payload["rps"], strict=True) if t >= NOW)


def test_series_rps_is_the_mean_of_the_samples_in_each_bin(engine: Engine, client: TestClient) -> None:
    seed_deployment(engine, NOW)
    payload = client.get("/dashboard/api/digits/series", params={"minutes": 30, "end": NOW}).json()
    step = payload["step_s"]
    index = next(i for i, t in enumerate(payload["t"]) if t >= NOW - 900)
    start = payload["t"][index]
    stamps = np.arange(NOW - 1800.0, NOW, SAMPLE_EVERY_S)
    inside = stamps[(stamps >= start) & (stamps < start + step)]
    expected = float(np.mean(600.0 + 200.0 * np.sin(inside / 600.0)))
    assert payload["rps"][index] == pytest.approx(expected, abs=1e-3)


def test_series_forecast_comes_from_the_newest_run_covering_each_instant(
    engine: Engine, client: TestClient
) -> None:
    seed_deployment(engine, NOW)
    payload = client.get("/dashboard/api/digits/series", params={"minutes": 60, "end": NOW}).json()
    assert payload["forecast_model"] == "ets"
    covered = [
        (t, lo, hi)
        for t, lo, hi in zip(payload["t"], payload["forecast_lower"], payload["forecast_upper"], strict=True)
        if lo is not None
    ]
    assert covered, "no forecast band in the window"
    assert all(lo <= hi for _, lo, hi in covered)
    # The old run (made 20 min ago) covers 30 min: the band reaches back before the fresh run began.
    assert min(t for t, _, _ in covered) < NOW - 600
    assert max(t for t, _, _ in covered) > NOW  # and the fresh run reaches into the future


def test_series_replicas_follow_the_decision_log_as_steps(engine: Engine, client: TestClient) -> None:
    seed_deployment(engine, NOW)
    payload = client.get("/dashboard/api/digits/series", params={"minutes": 30, "end": NOW}).json()

    def desired_at(moment: float) -> float | None:
        index = max(i for i, t in enumerate(payload["t"]) if t <= moment)
        return payload["replicas_desired"][index]

    assert desired_at(NOW - 1200) == 2
    assert desired_at(NOW - 600) == 3  # scaled up 900 s ago, held until the next decision
    assert desired_at(NOW - 100) == 2
    assert desired_at(NOW + 300) is None  # nothing drawn after the newest decision


def test_series_of_unknown_deployment_is_404(client: TestClient) -> None:
    response = client.get("/dashboard/api/nope/series")
    assert response.status_code == 404
    assert "nope" in response.text


def test_series_rejects_a_non_positive_window(engine: Engine, client: TestClient) -> None:
    seed_deployment(engine, NOW)
    assert client.get("/dashboard/api/digits/series", params={"minutes": 0}).status_code == 422


def test_panel_lists_active_overrides_and_scaling_changes_newest_first(
    engine: Engine, client: TestClient
) -> None:
    seed_deployment(engine, NOW)
    panel = client.get("/dashboard/api/digits/panel", params={"end": NOW}).text
    assert "floor 2" in panel and "ops@example.com" in panel
    assert panel.index(SCALE_DOWN_REASON) < panel.index(SCALE_UP_REASON)
    assert "version 1" in panel


def test_panel_hides_overrides_that_ended(engine: Engine, client: TestClient) -> None:
    seed_deployment(engine, NOW)
    panel = client.get("/dashboard/api/digits/panel", params={"end": NOW + 7200}).text
    assert "ops@example.com" not in panel
    assert "none: the policy decides" in panel


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("uPlot.iife.min.js", "text/javascript"),
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
    ],
)
def test_static_files_are_served_with_their_type(client: TestClient, name: str, media_type: str) -> None:
    response = client.get(f"/dashboard/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert len(response.content) > 500


@pytest.mark.parametrize("name", ["README.md", "..%2Frouter.py", "missing.js"])
def test_static_serves_nothing_but_the_shipped_scripts_and_styles(client: TestClient, name: str) -> None:
    assert client.get(f"/dashboard/static/{name}").status_code == 404


def test_recent_window_uses_fine_bins_and_a_day_uses_coarse_ones() -> None:
    assert time_grid(NOW, 15).step_s <= 5
    assert time_grid(NOW, 1440).step_s >= 300
    assert time_grid(NOW - timedelta(minutes=1).total_seconds(), 60).start % time_grid(NOW, 60).step_s == 0


def test_panel_shows_the_learned_capacity_the_owner_stored(engine: Engine, client: TestClient) -> None:
    seed_deployment(engine, NOW)
    with session_factory(engine)() as session, session.begin():
        session.add(
            DeploymentStatus(
                deployment_id=repository.get_deployment(session, "digits").id,
                controller="c1",
                capacity={
                    "mode": "learned",
                    "in_use_rps": 47.5,
                    "estimate": {"rps_per_replica": 50.2, "observations": 1800, "confidence": 0.87,
                                 "basis": "latency knee", "bracketed": True, "strained_rps": 44.1},
                },
            )
        )  # fmt: skip
    panel = client.get("/dashboard/api/digits/panel", params={"end": NOW}).text
    assert "<dt>mode</dt><dd>learned</dd>" in panel
    assert "47.5" in panel and "50.2 rps" in panel and "latency knee" in panel and "confidence 0.87" in panel
    assert "<dt>strained from (rps per replica)</dt><dd>44.1</dd>" in panel


def test_panel_without_status_shows_the_configured_mode(engine: Engine, client: TestClient) -> None:
    seed_deployment(engine, NOW)
    panel = client.get("/dashboard/api/digits/panel", params={"end": NOW}).text
    assert "<dt>mode</dt><dd>configured</dd>" in panel and "learned</dt>" not in panel
