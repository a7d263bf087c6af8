"""The container tests' gate: skipped with the reason where no engine runs, failed where Docker is expected (CI)."""

from __future__ import annotations

import pytest

from tests.containers_support import engine_problem, require_swarm


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PREWARM_REQUIRE_DOCKER", raising=False)


def test_no_engine_is_reported_with_the_reason(no_engine: None) -> None:
    problem = engine_problem()
    assert problem is not None and problem.startswith("no Docker engine answers")


def test_without_an_engine_the_container_tests_are_skipped_saying_how_to_start_one(no_engine: None) -> None:
    with pytest.raises(pytest.skip.Exception, match=r"scripts/ensure-docker\.sh"):
        require_swarm()


@pytest.mark.parametrize("variable", ["CI", "PREWARM_REQUIRE_DOCKER"])
def test_where_docker_is_expected_they_fail_instead(
    no_engine: None, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1" if variable == "PREWARM_REQUIRE_DOCKER" else "true")
    with pytest.raises(pytest.fail.Exception, match=r"expected to run here .* no Docker engine answers"):
        require_swarm()
