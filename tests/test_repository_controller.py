"""The controller repository on SQLite and real Postgres: deployments, policy versions, overrides, decisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pydantic
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from controller import repository as repo
from controller.overrides import InvalidOverride, OverrideKind
from controller.policy import ScalingPolicy
from prewarm.db.engine import session_factory
from prewarm.db.models import Deployment, ForecastPoint, ForecastRun, ReplicaEvent

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as session:
        yield session


def _deployment(session: Session, name: str = "digits", **changes: object) -> Deployment:
    fields: dict[str, object] = {
        "name": name,
        "model": "digits_mlp",
        "backend": "local",
        "backend_config": {"port_base": 8100},
        "min_replicas": 1,
        "max_replicas": 5,
        "price_per_replica_hour": 0.5,
        "policy": None,
        "author": "alice",
    }
    fields.update(changes)
    return repo.create_deployment(session, **fields)  # type: ignore[arg-type]


def test_create_deployment_stores_policy_version_one_with_the_deployment_bounds(session: Session) -> None:
    deployment = _deployment(session, policy=ScalingPolicy(min_replicas=3, max_replicas=20, tolerance=0.2))
    session.commit()
    version, policy = repo.current_policy(session, deployment.id)
    assert version == 1
    assert (policy.min_replicas, policy.max_replicas, policy.tolerance) == (1, 5, 0.2)
    assert policy.price_per_replica_hour == 0.5


def test_create_deployment_twice_is_a_conflict(session: Session) -> None:
    _deployment(session)
    session.commit()
    with pytest.raises(repo.ConflictError, match="already exists"):
        _deployment(session)


def test_create_deployment_with_min_above_max_is_invalid(session: Session) -> None:
    with pytest.raises(pydantic.ValidationError, match="max_replicas"):
        _deployment(session, min_replicas=6, max_replicas=2)


def test_get_unknown_deployment_raises_not_found(session: Session) -> None:
    with pytest.raises(repo.NotFoundError, match="nope"):
        repo.get_deployment(session, "nope")


def test_list_deployments_is_sorted_by_name(session: Session) -> None:
    _deployment(session, "zeta")
    _deployment(session, "alpha")
    session.commit()
    assert [d.name for d in repo.list_deployments(session)] == ["alpha", "zeta"]


def test_delete_deployment_removes_it_and_its_policies(session: Session) -> None:
    deployment = _deployment(session)
    session.commit()
    repo.delete_deployment(session, "digits", author="alice")
    session.commit()
    assert repo.list_deployments(session) == []
    with pytest.raises(repo.NotFoundError):
        repo.list_policy_versions(session, deployment.id)


def test_set_policy_adds_a_version_and_updates_the_deployment_bounds(session: Session) -> None:
    deployment = _deployment(session)
    version = repo.set_policy(
        session, deployment.id, ScalingPolicy(min_replicas=2, max_replicas=8), author="bob", comment="peak"
    )
    session.commit()
    assert version == 2
    assert (deployment.min_replicas, deployment.max_replicas) == (2, 8)
    versions = repo.list_policy_versions(session, deployment.id)
    assert [(p.version, p.author, p.comment) for p in versions] == [
        (2, "bob", "peak"),
        (1, "alice", "created with the deployment"),
    ]


def test_rollback_copies_the_old_version_as_a_new_one(session: Session) -> None:
    deployment = _deployment(session)
    repo.set_policy(session, deployment.id, ScalingPolicy(min_replicas=2, max_replicas=8), author="bob")
    new_version = repo.rollback_policy(session, deployment.id, 1, author="carol")
    session.commit()
    version, policy = repo.current_policy(session, deployment.id)
    assert (new_version, version) == (3, 3)
    assert (policy.min_replicas, policy.max_replicas) == (1, 5)
    assert deployment.max_replicas == 5
    assert repo.list_policy_versions(session, deployment.id)[0].comment == "rollback to version 1"


def test_rollback_to_a_missing_version_raises_not_found(session: Session) -> None:
    deployment = _deployment(session)
    with pytest.raises(repo.NotFoundError, match="version 9"):
        repo.rollback_policy(session, deployment.id, 9, author="carol")


def test_override_values_lists_only_overrides_in_force(session: Session) -> None:
    deployment = _deployment(session)
    for kind, value, start_h, end_h in [
        (OverrideKind.PIN, 4, 0, 2),
        (OverrideKind.FREEZE, None, 3, 4),  # future
        (OverrideKind.FLOOR, 2, -3, -1),  # past
    ]:
        repo.create_override(
            session,
            deployment.id,
            kind=kind,
            value=value,
            starts_at=T0 + timedelta(hours=start_h),
            ends_at=T0 + timedelta(hours=end_h),
            reason="event",
            author="alice",
        )
    session.commit()
    values = repo.override_values(session, deployment.id, T0 + timedelta(minutes=30))
    assert [(v.kind, v.value) for v in values] == [(OverrideKind.PIN, 4)]
    assert values[0].ends_at == (T0 + timedelta(hours=2)).timestamp()


def test_override_with_a_value_for_freeze_is_invalid(session: Session) -> None:
    deployment = _deployment(session)
    with pytest.raises(InvalidOverride, match="takes no value"):
        repo.create_override(
            session,
            deployment.id,
            kind="freeze",
            value=3,
            starts_at=T0,
            ends_at=T0 + timedelta(hours=1),
            reason="x",
            author="a",
        )


def test_end_override_stops_it_and_records_who(session: Session) -> None:
    deployment = _deployment(session)
    override = repo.create_override(
        session,
        deployment.id,
        kind="pin",
        value=3,
        starts_at=T0,
        ends_at=T0 + timedelta(hours=2),
        reason="launch",
        author="alice",
    )
    ended = repo.end_override(
        session, deployment.id, override.id, author="bob", now=T0 + timedelta(minutes=10)
    )
    session.commit()
    assert (ended.ended_by, ended.ended_at) == ("bob", T0 + timedelta(minutes=10))
    assert repo.override_values(session, deployment.id, T0 + timedelta(minutes=20)) == []
    assert len(repo.list_overrides(session, deployment.id)) == 1


def test_ending_an_override_twice_is_a_conflict(session: Session) -> None:
    deployment = _deployment(session)
    override = repo.create_override(
        session,
        deployment.id,
        kind="dry-run",
        value=None,
        starts_at=T0,
        ends_at=T0 + timedelta(hours=2),
        reason="test",
        author="alice",
    )
    repo.end_override(session, deployment.id, override.id, author="bob", now=T0)
    with pytest.raises(repo.ConflictError, match="already ended"):
        repo.end_override(session, deployment.id, override.id, author="bob", now=T0)


def test_decisions_are_paged_newest_first_and_filtered_by_time(session: Session) -> None:
    deployment = _deployment(session)
    for minute in range(5):
        repo.record_decision(
            session,
            deployment.id,
            ts=T0 + timedelta(minutes=minute),
            current=1,
            desired=minute + 1,
            applied=True,
            source="predictive",
            reasons=[{"step": "bounds", "detail": f"m{minute}"}],
            policy_version=1,
        )
    session.commit()
    page = repo.list_decisions(
        session,
        deployment.id,
        start=T0 + timedelta(minutes=1),
        end=T0 + timedelta(minutes=4),
        limit=2,
        offset=1,
    )
    assert [d.desired for d in page] == [3, 2]
    latest = repo.latest_decision(session, deployment.id)
    assert latest is not None and latest.reasons == [{"step": "bounds", "detail": "m4"}]


def test_latest_forecast_returns_the_newest_run_with_sorted_points(session: Session) -> None:
    deployment = _deployment(session)
    assert repo.latest_forecast(session, deployment.id) is None
    for offset_min, model in [(0, "old"), (10, "new")]:
        run = ForecastRun(
            deployment_id=deployment.id,
            created_at=T0 + timedelta(minutes=offset_min),
            model_name=model,
            step_s=60,
            horizon_s=120,
        )
        session.add(run)
        session.flush()
        for k in (1, 0):
            session.add(
                ForecastPoint(
                    run_id=run.id, target_ts=T0 + timedelta(minutes=k), point=k, lower=0, upper=k + 1
                )
            )
    session.commit()
    found = repo.latest_forecast(session, deployment.id)
    assert found is not None
    run, points = found
    assert run.model_name == "new"
    assert [p.target_ts for p in points] == [T0, T0 + timedelta(minutes=1)]


def test_replica_startup_is_the_median_of_recent_ready_events(session: Session) -> None:
    deployment = _deployment(session)
    assert repo.replica_startup_s(session, deployment.id) is None
    for i, (event, duration) in enumerate(
        [("ready", 10.0), ("ready", 30.0), ("failed", 99.0), ("ready", 20.0)]
    ):
        session.add(
            ReplicaEvent(
                deployment_id=deployment.id,
                replica=f"r{i}",
                event=event,
                ts=T0 + timedelta(seconds=i),
                duration_s=duration,
            )
        )
    session.commit()
    assert repo.replica_startup_s(session, deployment.id) == 20.0
    assert repo.replica_startup_s(session, deployment.id, recent=1) == 20.0
    assert repo.replica_startup_s(session, deployment.id, recent=2) == 25.0
