"""The reconcile loop: decide() fed from the store, acting through a backend, recording its decisions."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from controller import loop as loop_module
from controller import repository
from controller.backends.base import BackendError, ReplicaBackend
from controller.backends.dry_run import DryRunBackend
from controller.loop import ReconcileLoop
from controller.policy import ScalingPolicy
from controller.sources.store import StoreSource
from prewarm import metric_names as m
from prewarm.db.engine import create_engine_for_url, session_factory
from prewarm.db.models import Deployment, ScalingDecision
from prewarm.db.store import MetricsStore, Sample
from tests.tcp_proxy import TcpProxy

NOW = float(int(time.time()))


@pytest.fixture(autouse=True)
def _fresh_now() -> None:
    """Each test starts at the current second: the store rejects samples far from the real clock, and a suite can
    take longer than that between collecting this module and running a test."""
    global NOW
    NOW = float(int(time.time()))


def _create(engine: Engine, name: str = "digits", policy: ScalingPolicy | None = None, **bounds: int) -> int:
    with session_factory(engine)() as session:
        deployment = repository.create_deployment(
            session,
            name=name,
            model="digits_mlp",
            backend="dry-run",
            backend_config={"initial_replicas": 2},
            min_replicas=bounds.get("min_replicas", 1),
            max_replicas=bounds.get("max_replicas", 10),
            price_per_replica_hour=0.1,
            policy=policy,
            author="test",
        )
        session.commit()
        return deployment.id


def _feed(engine: Engine, metric: str, value: float, seconds: int = 60, end: float | None = None) -> None:
    end = NOW if end is None else end
    MetricsStore(engine).insert_samples(
        [Sample("digits", metric, end - i, value) for i in range(seconds)], now=end + 1
    )


def _loop(engine: Engine, backends: dict[str, ReplicaBackend] | None = None) -> ReconcileLoop:
    made = backends if backends is not None else {}

    def factory(deployment: Deployment) -> ReplicaBackend:
        made.setdefault(deployment.name, DryRunBackend(initial_replicas=2))
        return made[deployment.name]

    return ReconcileLoop(
        engine, StoreSource(MetricsStore(engine)), backend_factory=factory, state_root=Path("/tmp")
    )


def _decisions(engine: Engine) -> list[ScalingDecision]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(ScalingDecision).order_by(ScalingDecision.ts)))


def test_high_cpu_scales_up_through_the_backend_and_is_recorded(engine: Engine) -> None:
    _create(engine)
    _feed(engine, m.CPU_PERCENT, 140.0)
    _feed(engine, m.REQUESTS_RPS, 500.0)
    backends: dict[str, ReplicaBackend] = {}
    decisions = _loop(engine, backends).reconcile_once(NOW + 1)
    assert decisions["digits"].desired == 4  # ceil(2 * 140 / 70)
    assert backends["digits"].ready_count() == 4
    [stored] = _decisions(engine)
    assert (stored.current, stored.desired, stored.applied) == (2, 4, True)
    assert any("cpu 140 > 70" in reason for reason in stored.reasons)


def test_no_metrics_keeps_the_current_count(engine: Engine) -> None:
    _create(engine)
    backends: dict[str, ReplicaBackend] = {}
    decision = _loop(engine, backends).reconcile_once(NOW)["digits"]
    assert decision.desired == 2
    assert backends["digits"].ready_count() == 2


def test_a_pin_override_made_in_the_store_is_obeyed_until_it_expires(engine: Engine) -> None:
    deployment_id = _create(engine)
    _feed(engine, m.CPU_PERCENT, 50.0, seconds=600, end=NOW + 400)
    with session_factory(engine)() as session:
        repository.create_override(
            session, deployment_id, kind="pin", value=7,
            starts_at=datetime.fromtimestamp(NOW - 10, UTC), ends_at=datetime.fromtimestamp(NOW + 100, UTC),
            reason="launch event", author="test",
        )  # fmt: skip
        session.commit()
    backends: dict[str, ReplicaBackend] = {}
    loop = _loop(engine, backends)
    assert loop.reconcile_once(NOW)["digits"].desired == 7
    assert backends["digits"].ready_count() == 7
    after = loop.reconcile_once(NOW + 101)["digits"]
    assert after.source != "pin"
    assert "pin" not in " ".join(after.reason_texts[-2:])


def test_unchanged_decisions_are_recorded_at_a_lower_rate(engine: Engine) -> None:
    _create(engine)
    _feed(engine, m.CPU_PERCENT, 50.0, seconds=200, end=NOW + 100)
    loop = _loop(engine)
    for second in range(0, 100, 5):  # policy.decision_interval_s is 5 s
        loop.reconcile_once(NOW + second)
    decisions = _decisions(engine)
    assert 2 <= len(decisions) <= 3  # first one, then one a minute while nothing changes


def test_a_backend_that_fails_is_logged_and_the_loop_goes_on(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    _create(engine)
    _create(engine, name="other")
    _feed(engine, m.CPU_PERCENT, 140.0)

    class Broken(DryRunBackend):
        def scale_to(self, replicas: int) -> None:
            raise BackendError("the API server said no")

    backends: dict[str, ReplicaBackend] = {"digits": Broken(initial_replicas=2)}
    with caplog.at_level(logging.ERROR):
        decisions = _loop(engine, backends).reconcile_once(NOW + 1)
    assert set(decisions) == {"digits", "other"}, decisions
    assert decisions["digits"].desired == 4, decisions["digits"].reason_texts
    assert "the API server said no" in caplog.text
    stored = [d for d in _decisions(engine) if d.desired == 4]
    assert stored and stored[0].applied is False


def test_restart_resumes_the_scale_down_window_from_the_store(engine: Engine) -> None:
    _create(engine)
    _feed(engine, m.CPU_PERCENT, 140.0, seconds=60, end=NOW)
    backends: dict[str, ReplicaBackend] = {}
    assert _loop(engine, backends).reconcile_once(NOW)["digits"].desired == 4
    # The load drops; a new controller process (same replicas, fresh memory) must not scale down at once.
    _feed(engine, m.CPU_PERCENT, 10.0, seconds=60, end=NOW + 60)
    restarted = _loop(engine, backends)
    decision = restarted.reconcile_once(NOW + 61)["digits"]
    assert decision.desired == 4
    assert any("stabilised" in reason for reason in decision.reason_texts)
    _feed(engine, m.CPU_PERCENT, 10.0, seconds=60, end=NOW + 420)
    later = restarted.reconcile_once(NOW + 421)  # the window (300 s) no longer holds the stored 4s
    assert later["digits"].desired < 4


def test_database_outage_keeps_the_count_and_the_loop_resumes(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(postgres_url)
    direct = create_engine_for_url(postgres_url)
    _create(direct)
    _feed(direct, m.CPU_PERCENT, 140.0, seconds=60, end=NOW)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    through_proxy = create_engine_for_url(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        connect_args={"connect_timeout": 2},
    )
    backends: dict[str, ReplicaBackend] = {}
    loop = _loop(through_proxy, backends)
    assert loop.reconcile_once(NOW)["digits"].desired == 4

    proxy.cut()
    passed_before = loop.last_pass_completed
    with caplog.at_level(logging.ERROR):
        assert loop.reconcile_once(NOW + 10) == {}
    assert "database unreachable" in caplog.text
    assert loop.last_pass_completed is not None and passed_before is not None
    assert loop.last_pass_completed > passed_before  # the pass completed: /livez stays up through an outage
    assert backends["digits"].ready_count() == 4  # nothing was scaled while blind

    proxy.start()
    _feed(direct, m.CPU_PERCENT, 280.0, seconds=60, end=NOW + 20)
    assert loop.reconcile_once(NOW + 21)["digits"].desired == 10  # resumed: ceil(4 * 280/70) = 16 -> max 10
    with session_factory(direct)() as session:
        assert session.scalar(select(func.count()).select_from(ScalingDecision)) == 2
    proxy.cut()
    through_proxy.dispose()
    direct.dispose()


def test_deleting_a_deployment_releases_its_backend(engine: Engine) -> None:
    _create(engine)
    closed: list[str] = []

    class Tracking(DryRunBackend):
        def close(self) -> None:
            closed.append("digits")

    backends: dict[str, ReplicaBackend] = {"digits": Tracking(initial_replicas=2)}
    loop = _loop(engine, backends)
    loop.reconcile_once(NOW)
    with session_factory(engine)() as session:
        repository.delete_deployment(session, "digits", author="test")
        session.commit()
    loop.reconcile_once(NOW + 10)
    assert closed == ["digits"]
    assert loop.status("digits") is None


def test_the_deployment_list_is_read_again_only_when_its_mark_changes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A created, a deleted and a re-created deployment (same name, new row) are each seen on the next second's
    check; between changes the list is not read again."""
    _create(engine)
    backends: dict[str, ReplicaBackend] = {}
    loop = _loop(engine, backends)
    loop.reconcile_once(NOW)
    first_id = loop.runtimes["digits"].row.id
    reads: list[int] = []
    original = loop_module.read_deployments

    def counting(session):  # type: ignore[no-untyped-def]
        reads.append(1)
        return original(session)

    monkeypatch.setattr(loop_module, "read_deployments", counting)
    loop.reconcile_once(NOW + 2)
    assert reads == []  # nothing changed: the mark said so
    _create(engine, name="other")
    loop.reconcile_once(NOW + 4)
    assert len(reads) == 1 and loop.status("other") is not None
    with session_factory(engine)() as session:
        repository.delete_deployment(session, "digits", author="test")
        session.commit()
    _create(engine)  # the same name again: a new row, a new backend
    loop.reconcile_once(NOW + 6)
    assert len(reads) == 2
    assert loop.runtimes["digits"].row.id == _id(engine, "digits") != first_id


def _id(engine: Engine, name: str) -> int:
    with session_factory(engine)() as session:
        return int(session.scalars(select(Deployment.id).where(Deployment.name == name)).one())


def test_status_reports_the_live_view(engine: Engine) -> None:
    _create(engine)
    _feed(engine, m.CPU_PERCENT, 140.0)
    loop = _loop(engine)
    loop.reconcile_once(NOW + 1)
    status = loop.status("digits")
    assert status is not None
    assert status["desired_replicas"] == 4 and status["current_replicas"] == 2
    assert status["reasons"]


def test_an_idle_min_zero_deployment_goes_to_zero_and_its_status_row_says_since_when(engine: Engine) -> None:
    from prewarm.db.models import DeploymentStatus

    deployment_id = _create(engine, policy=ScalingPolicy(min_replicas=0), min_replicas=0)
    _feed(engine, m.REQUESTS_RPS, 0.0)
    _feed(engine, m.CPU_PERCENT, 0.0)
    backends: dict[str, ReplicaBackend] = {}
    loop = _loop(engine, backends)
    decision = loop.reconcile_once(NOW + 1)["digits"]
    assert decision.desired == 0 and decision.source == "scale-to-zero", decision.reason_texts
    assert backends["digits"].ready_count() == 0
    [stored] = _decisions(engine)
    assert (stored.current, stored.desired) == (2, 0)
    assert any(r.startswith("scale-to-zero: idle 60 s and no usable forecast -> 0") for r in stored.reasons)
    with session_factory(engine)() as session:
        status = session.get(DeploymentStatus, deployment_id)
        assert status is not None and status.desired_replicas == 0
        assert status.idle_since is not None
        assert abs(status.idle_since.timestamp() - (NOW - 59)) <= 1
    live = loop.status("digits")
    assert live is not None and live["idle_since"] is not None and live["next_wake_at"] is None
