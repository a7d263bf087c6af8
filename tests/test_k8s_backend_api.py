"""The Kubernetes backend over real HTTP against a Kubernetes API mock (kmock) on 127.0.0.1."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from controller.backends.base import BackendError, ReplicaBackend, ReplicaState
from controller.backends.kubernetes import KubernetesApiError, KubernetesBackend, KubernetesTarget
from tests.kube_support import (
    DEPLOYMENT_PATH,
    NAME,
    NAMESPACE,
    PODS_PATH,
    SCALE_PATH,
    TOKEN,
    ApiServer,
    api_server,
)

__all__ = ["api_server"]  # the fixture, used by the tests below

@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_backend(server: ApiServer, sleeps: list[float], **overrides: Any) -> KubernetesBackend:
    config: dict[str, Any] = {
        "namespace": NAMESPACE,
        "kubeconfig": str(server.kubeconfig),
        "context": "test",
        "request_timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_initial_s": 0.1,
        "backoff_max_s": 0.3,
    }
    config.update(overrides)
    target = KubernetesTarget.from_config(config, default_name=NAME)
    return KubernetesBackend(target, sleep=sleeps.append)


def test_backend_satisfies_the_replica_backend_protocol(api_server: ApiServer, sleeps: list[float]) -> None:
    backend = make_backend(api_server, sleeps)
    assert isinstance(backend, ReplicaBackend)
    assert backend.name == "kubernetes"
    backend.close()


def test_scale_to_patches_the_scale_subresource_with_the_read_resource_version(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    backend = make_backend(api_server, sleeps)
    backend.scale_to(5)
    assert api_server.cluster.replicas == 5
    assert api_server.cluster.patches() == [{"metadata": {"resourceVersion": "100"}, "spec": {"replicas": 5}}]
    assert backend.desired_count() == 5


def test_requests_use_the_kubeconfig_context_and_its_token(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    make_backend(api_server, sleeps).ready_count()
    assert api_server.cluster.requests, "the selected context must point at the mock, not the current context"
    assert all(auth == f"Bearer {TOKEN}" for *_, auth in api_server.cluster.requests)


def test_scale_to_the_current_count_sends_no_patch(api_server: ApiServer, sleeps: list[float]) -> None:
    make_backend(api_server, sleeps).scale_to(2)
    assert api_server.cluster.patches() == []


def test_conflict_from_a_concurrent_scale_is_retried_from_a_fresh_read(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.faults[f"PATCH {SCALE_PATH}"] = ["concurrent-scale"]
    make_backend(api_server, sleeps).scale_to(6)
    assert api_server.cluster.replicas == 6
    versions = [body["metadata"]["resourceVersion"] for body in api_server.cluster.patches()]
    assert versions == ["100", "101"]  # the retry used the version written by the other client
    assert sleeps == [0.1]


def test_persistent_conflict_raises_backend_error_after_max_attempts(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.faults[f"PATCH {SCALE_PATH}"] = ["409", "409", "409", "409"]
    with pytest.raises(BackendError, match="409"):
        make_backend(api_server, sleeps).scale_to(4)
    assert len(api_server.cluster.patches()) == 3
    assert sleeps == [0.1, 0.2]  # exponential backoff between the three attempts
    assert api_server.cluster.replicas == 2


def test_backoff_is_capped(api_server: ApiServer, sleeps: list[float]) -> None:
    api_server.cluster.faults[f"GET {DEPLOYMENT_PATH}"] = ["503"] * 4
    backend = make_backend(api_server, sleeps, max_attempts=5)
    assert backend.ready_count() == 2
    assert sleeps == [0.1, 0.2, 0.3, 0.3]


def test_forbidden_is_not_retried_and_says_which_grant_is_missing(
    api_server: ApiServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    api_server.cluster.faults[f"PATCH {SCALE_PATH}"] = ["403"]
    with (
        caplog.at_level(logging.ERROR, logger="controller.backends.kubernetes"),
        pytest.raises(KubernetesApiError) as raised,
    ):
        make_backend(api_server, sleeps).scale_to(3)
    assert raised.value.status == 403
    message = str(raised.value)
    assert "'patch' on 'deployments/scale'" in message
    assert f"namespace '{NAMESPACE}'" in message
    assert len(api_server.cluster.patches()) == 1
    assert sleeps == []
    assert any("403" in record.getMessage() for record in caplog.records)


def test_timeout_is_retried(api_server: ApiServer, sleeps: list[float]) -> None:
    api_server.cluster.faults[f"GET {DEPLOYMENT_PATH}"] = ["slow"]
    backend = make_backend(api_server, sleeps, request_timeout_s=1.0)
    assert backend.ready_count() == 2
    assert sleeps == [0.1]
    assert sum(1 for method, path, *_ in api_server.cluster.requests if path == DEPLOYMENT_PATH) == 2


def test_persistent_timeout_raises_backend_error(api_server: ApiServer, sleeps: list[float]) -> None:
    api_server.cluster.faults[f"GET {SCALE_PATH}"] = ["slow", "slow"]
    backend = make_backend(api_server, sleeps, request_timeout_s=1.0, max_attempts=2)
    with pytest.raises(KubernetesApiError, match="did not answer after 2 attempts") as raised:
        backend.scale_to(7)
    assert raised.value.status == 0
    assert api_server.cluster.replicas == 2


def test_unreachable_api_server_raises_backend_error(tmp_path: Path, sleeps: list[float]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    target = KubernetesTarget(
        NAMESPACE, NAME, kubeconfig=str(kubeconfig), max_attempts=2, request_timeout_s=1
    )
    with pytest.raises(BackendError, match="did not answer"):
        KubernetesBackend(target, sleep=sleeps.append).ready_count()


def test_ready_count_reads_ready_replicas_from_the_deployment_status(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.replicas = 4
    api_server.cluster.ready_replicas = 3
    assert make_backend(api_server, sleeps).ready_count() == 3


def test_ready_count_is_zero_when_the_status_has_no_ready_replicas(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.ready_replicas = None  # the API omits zero-valued fields
    assert make_backend(api_server, sleeps).ready_count() == 0


def test_missing_deployment_raises_an_actionable_error(api_server: ApiServer, sleeps: list[float]) -> None:
    backend = make_backend(api_server, sleeps, deployment="nonexistent")
    with pytest.raises(KubernetesApiError, match=r"404 .*backend_config"):
        backend.ready_count()
    assert sleeps == []


def pod(name: str, *, ready: bool, phase: str = "Running", deleting: bool = False, waiting: str = "") -> dict:
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "labels": {"app": "resnet"}}
    if deleting:
        metadata["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    status: dict[str, Any] = {
        "phase": phase,
        "podIP": "10.0.0.7",
        "startTime": "2025-01-01T00:00:00Z",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if waiting:
        status["containerStatuses"] = [
            {"name": "replica", "image": "x", "imageID": "", "ready": False, "restartCount": 3,
             "state": {"waiting": {"reason": waiting}}}
        ]  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "status": status}


def test_replicas_lists_the_deployment_pods_with_their_states(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.pods = [
        pod("resnet-a", ready=True),
        pod("resnet-b", ready=False),
        pod("resnet-c", ready=True, deleting=True),
        pod("resnet-d", ready=False, waiting="CrashLoopBackOff"),
        pod("resnet-e", ready=False, phase="Failed"),
    ]
    replicas = make_backend(api_server, sleeps).replicas()
    assert [(r.replica_id, r.state) for r in replicas] == [
        ("resnet-a", ReplicaState.READY),
        ("resnet-b", ReplicaState.STARTING),
        ("resnet-c", ReplicaState.STOPPING),
        ("resnet-d", ReplicaState.FAILED),
        ("resnet-e", ReplicaState.FAILED),
    ]
    assert replicas[0].address == "10.0.0.7"
    assert replicas[0].started_at == 1735689600.0


def test_replicas_falls_back_to_status_counts_when_pods_are_forbidden(
    api_server: ApiServer, sleeps: list[float]
) -> None:
    api_server.cluster.replicas = 3
    api_server.cluster.ready_replicas = 1
    api_server.cluster.faults[f"GET {PODS_PATH}"] = ["403"]
    backend = make_backend(api_server, sleeps)
    states = [r.state for r in backend.replicas()]
    assert states == [ReplicaState.READY, ReplicaState.STARTING, ReplicaState.STARTING]
    backend.replicas()  # does not ask for pods again after a 403
    assert sum(1 for _, path, *_ in api_server.cluster.requests if path == PODS_PATH) == 1


def test_missing_kubeconfig_raises_backend_error(tmp_path: Path) -> None:
    target = KubernetesTarget(NAMESPACE, NAME, kubeconfig=str(tmp_path / "absent"), in_cluster=False)
    with pytest.raises(BackendError, match="cannot load Kubernetes credentials"):
        KubernetesBackend(target)


def test_target_from_config_defaults_namespace_and_deployment_name() -> None:
    target = KubernetesTarget.from_config({}, default_name="resnet")
    assert (target.namespace, target.deployment) == ("default", "resnet")


def test_target_from_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown Kubernetes backend_config keys"):
        KubernetesTarget.from_config({"namespace": "a", "deployment": "b", "replicas": 3})


def test_negative_replica_count_is_refused(api_server: ApiServer, sleeps: list[float]) -> None:
    with pytest.raises(ValueError):
        make_backend(api_server, sleeps).scale_to(-1)
    assert api_server.cluster.patches() == []
