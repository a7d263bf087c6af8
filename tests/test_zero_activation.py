"""The activation push: POST .../activate reaches the loop, which decides at once with the held requests."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import Engine

import controller.loop as loop_module
from controller.backends.base import ReplicaBackend
from controller.decision_values import Observations
from controller.loop import ReconcileLoop
from controller.policy import ScalingPolicy
from controller.runtime import ControllerRuntime
from tests.api_support import (
    ADMIN,
    API,
    READER,
    ClientFactory,
    assert_problem,
    create_deployment,
    make_client,
)
from tests.test_controller_loop import _create, _loop

__all__ = ["make_client"]  # fixture


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[Observations]:
    """The observations every decide() call of the loop received (the real decide() still decides)."""
    observed: list[Observations] = []
    real = loop_module.decide

    def spy(policy: ScalingPolicy, observations: Observations, *args: Any) -> Any:
        observed.append(observations)
        return real(policy, observations, *args)

    monkeypatch.setattr(loop_module, "decide", spy)
    return observed


def test_an_activation_makes_the_deployment_due_now_with_the_held_count(engine: Engine, seen: list[Observations]) -> None:
    _create(engine, policy=ScalingPolicy(min_replicas=0, decision_interval_s=30.0))
    backends: dict[str, ReplicaBackend] = {}
    loop: ReconcileLoop = _loop(engine, backends)
    now = time.time()
    loop.reconcile_once(now)  # decided; the next decision is 30 s away
    assert seen[-1].held_requests == 0
    assert loop.reconcile_once(now + 1) == {}  # nothing due
    assert loop.activate("digits", 7, now + 1.5)
    decisions = loop.reconcile_once(now + 1.5)
    assert "digits" in decisions and seen[-1].held_requests == 7
    assert loop.status("digits")["held_requests"] in (0, 7)  # believed for 2 s after the push (wall clock)
    assert not loop.activate("unknown", 3)


def test_held_requests_are_forgotten_when_the_pushes_stop(engine: Engine, seen: list[Observations]) -> None:
    _create(engine, policy=ScalingPolicy(min_replicas=0, decision_interval_s=1.0))
    loop = _loop(engine)
    now = time.time()
    loop.reconcile_once(now)
    loop.activate("digits", 4, now)
    loop.reconcile_once(now + 0.5)
    loop.reconcile_once(now + 5.0)  # no push for 5 s: the activator holds nothing any more
    assert [o.held_requests for o in seen] == [0, 4, 0]


def test_the_activate_endpoint_checks_its_input_and_reaches_the_runtime(
    engine: Engine, make_client: ClientFactory, seen: list[Observations]
) -> None:
    loop = _loop(engine)
    client = make_client(runtime=ControllerRuntime(engine, loop, None))
    create_deployment(client, "digits", min_replicas=0)
    path = f"{API}/deployments/digits/activate"
    assert_problem(client.post(f"{API}/deployments/nope/activate", json={"held_requests": 1}, headers=ADMIN), 404)
    assert_problem(client.post(path, json={"held_requests": -1}, headers=ADMIN), 422)
    assert_problem(client.post(path, json={"held_requests": 1, "extra": 1}, headers=ADMIN), 422)
    assert_problem(client.post(path, json={"held_requests": 1}), 401)
    assert_problem(client.post(path, json={"held_requests": 1}, headers=READER), 403)
    response = client.post(path, json={"held_requests": 2}, headers=ADMIN)
    assert response.status_code == 202 and response.json()["reconciling"] is False  # the loop has not seen it yet
    loop.reconcile_once()
    response = client.post(path, json={"held_requests": 3}, headers=ADMIN)
    assert response.status_code == 202 and response.json() == {
        "deployment": "digits", "held_requests": 3, "reconciling": True,
    }  # fmt: skip
    loop.reconcile_once()
    assert seen[-1].held_requests == 3


def test_without_a_runtime_the_push_is_accepted_but_not_acted_on(make_client: ClientFactory) -> None:
    client = make_client()
    create_deployment(client, "digits", min_replicas=0)
    response = client.post(f"{API}/deployments/digits/activate", json={"held_requests": 1}, headers=ADMIN)
    assert response.status_code == 202 and response.json()["reconciling"] is False
